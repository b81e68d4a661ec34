"""URLs served on the public schema's domains (``localhost``): landing page and platform admin."""

from django.urls import path
from django.views.i18n import JavaScriptCatalog

from org import account_views
from tenants import metrics
from tenants import views as tenant_views
from tenants.admin import platform_admin_site
from weiyu import views

urlpatterns = [
    # the platform admin's sign-in with the code step (org.account_views), before Django's own
    path("admin/login/", account_views.admin_login(platform_admin_site), name="admin-login"),
    path("admin/login/code/", account_views.AdminSignInCodeView.as_view(), name="admin-login-code"),
    path("admin/", platform_admin_site.urls),
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
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("tls/ask", tenant_views.tls_ask, name="tls-ask"),
    path("favicon.ico", views.favicon, name="favicon"),
    # public sign-up (tenants.signup, TEN-4)
    path("signup/", tenant_views.signup_page, name="signup"),
    path("signup/verify/<str:token>/", tenant_views.signup_verify_page, name="signup-verify"),
    path("", views.landing, name="landing"),
]

# errors raised outside a view or by URL resolution: JSON under /api/ (docs/api.md)
handler400 = views.bad_request
handler404 = views.page_not_found
handler500 = views.server_error
