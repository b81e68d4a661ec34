"""Knowledge-base URLs on a tenant's domain: the help center pages."""

from django.urls import path

from kbase import views

app_name = "kbase"

urlpatterns = [
    path("help/", views.help_index, name="help"),
    path("help/<int:kb_id>/<str:slug>", views.help_article, name="help-article"),
]
