"""URLs served on a tenant's domain."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, reverse_lazy
from django.utils.translation import gettext_lazy as _
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from kbase import api as kbase_api
from kefu import api as kefu_api
from kefu import api_search as kefu_api_search
from kefu import onboarding
from org import account_views, sso_views
from tenants import metrics
from tenants import views as tenant_views
from tickets import dashboard
from weiyu import views

admin.site.site_header = _("Weiyu back office")
admin.site.site_title = _("Weiyu")
admin.site.index_title = _("Customer service administration")
admin.site.index_template = "admin/backoffice_index.html"
_SITE = {"site_header": admin.site.site_header, "site_title": admin.site.site_title}

urlpatterns = [
    # before the admin's own URLs: its index with the getting-started checklist (kefu.onboarding)
    # with the dashboard and the grouped navigation (tickets.dashboard)
    path("admin/", admin.site.admin_view(dashboard.backoffice_index), name="backoffice-index"),
    path(
        "admin/onboarding/",
        admin.site.admin_view(onboarding.onboarding_page),
        name="backoffice-onboarding",
    ),
    # the plan and its usage (tenants.quotas, TEN-3)
    path(
        "admin/plan/", admin.site.admin_view(tenant_views.plan_usage_page), name="backoffice-plan"
    ),
    # where a public sign-up ends: signed in once, on to the getting-started page (tenants.signup)
    path("signup/welcome/<str:token>/", tenant_views.signup_welcome, name="signup-welcome"),
    # the set-password link of a new administrator's invitation (tenants.services)
    path(
        "admin/set-password/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="admin/set_password.html",
            success_url=reverse_lazy("password-set-done"),
            extra_context=_SITE,
        ),
        name="password-set",
    ),
    path(
        "admin/set-password/done/",
        auth_views.PasswordResetCompleteView.as_view(
            template_name="admin/set_password_done.html", extra_context=_SITE
        ),
        name="password-set-done",
    ),
    # the back office's sign-in with the code step (org.account_views), before Django's own
    path("admin/login/", account_views.admin_login(admin.site), name="admin-login"),
    path("admin/login/code/", account_views.AdminSignInCodeView.as_view(), name="admin-login-code"),
    path("admin/", admin.site.urls),
    path("account/security/", account_views.security_page, name="account-security"),
    # security keys / passkeys (org.securitykeys)
    path("account/passkey/options/", account_views.passkey_options, name="passkey-options"),
    path("account/passkey/", account_views.passkey_sign_in, name="passkey-sign-in"),
    path(
        "account/security/keys/options/",
        account_views.security_key_options,
        name="account-key-options",
    ),
    path("account/security/keys/", account_views.security_key_add, name="account-key-add"),
    path(
        "account/security/keys/<int:key_id>/delete/",
        account_views.security_key_delete,
        name="account-key-delete",
    ),
    # single sign-on with the tenant's OpenID Connect provider (org.sso)
    path("account/sso/start/", sso_views.sso_start, name="account-sso-start"),
    path("account/sso/callback/", sso_views.sso_callback, name="account-sso-callback"),
    path(
        "account/security/sessions/end/",
        account_views.end_other_sessions,
        name="account-end-sessions",
    ),
    path(
        "account/security/sessions/<int:session_id>/end/",
        account_views.end_session,
        name="account-end-session",
    ),
    # "forgot your password?" (org.passwords); the second name puts the link on the back
    # office's sign-in page (Django's admin shows it when the name exists)
    path("account/password/reset/", account_views.password_reset, name="account-password-reset"),
    path("account/password/reset/", account_views.password_reset, name="admin_password_reset"),
    path(
        "account/password/reset/done/",
        account_views.password_reset_done,
        name="account-password-reset-done",
    ),
    path(
        "account/password/reset/<uidb64>/<token>/",
        account_views.PasswordResetConfirmView.as_view(),
        name="account-password-reset-confirm",
    ),
    path("jsi18n/", views.JavaScriptCatalogView.as_view(), name="javascript-catalog"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("favicon.ico", views.favicon, name="favicon"),
    # the tenant's logo (tenants.branding): widget, help center, e-mails
    path("branding/logo", tenant_views.branding_logo, name="branding-logo"),
    # the OpenAPI 3 schema (weiyu/schema.py) and Swagger UI over it; public, like docs/api.md
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/v1/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", title="Weiyu API"),
        name="api-docs",
    ),
    path("api/v1/im/", include("im.urls")),
    path("api/v1/org/", include("org.urls")),
    path("api/v1/", include("tickets.urls")),
    path("api/v1/kbase/", include((kbase_api.urlpatterns, "kbase-api"))),
    path("api/v1/kefu/", include((kefu_api.urlpatterns, "kefu-api"))),
    path("api/v1/kefu/", include((kefu_api_search.urlpatterns, "kefu-search"))),
    path("", include("kbase.urls")),
    path("", include("kefu.urls")),
]

# errors raised outside a view or by URL resolution: JSON under /api/ (docs/api.md)
handler400 = views.bad_request
handler404 = views.page_not_found
handler500 = views.server_error
