"""URLs served on a tenant's domain."""

from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _

from kbase import api as kbase_api
from kefu import api as kefu_api
from weiyu import views

admin.site.site_header = _("Weiyu back office")
admin.site.site_title = _("Weiyu")
admin.site.index_title = _("Customer service administration")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("jsi18n/", views.JavaScriptCatalogView.as_view(), name="javascript-catalog"),
    path("healthz", views.healthz, name="healthz"),
    path("api/v1/im/", include("im.urls")),
    path("api/v1/org/", include("org.urls")),
    path("api/v1/", include("tickets.urls")),
    path("api/v1/kbase/", include((kbase_api.urlpatterns, "kbase-api"))),
    path("api/v1/kefu/", include((kefu_api.urlpatterns, "kefu-api"))),
    path("", include("kbase.urls")),
    path("", include("kefu.urls")),
]
