"""URLs served on the public schema's domains (``localhost``): landing page and platform admin."""

from django.urls import path
from django.views.i18n import JavaScriptCatalog

from tenants.admin import platform_admin_site
from weiyu import views

urlpatterns = [
    path("admin/", platform_admin_site.urls),
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("", views.landing, name="landing"),
]
