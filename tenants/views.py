"""Pages of the tenants app: public sign-up (platform domain), the sign-in link that ends it and
the plan-and-usage page (tenant domain), the page staff of a suspended tenant see."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth import login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from tenants import branding, quotas, signup
from tenants.admin import tenant_public_url
from tenants.models import Domain
from weiyu import ratelimit
from weiyu.errors import RateLimitedError, ServiceError

#: the backend the welcome link signs in with (org.backends; a string: org sits above tenants)
_BACKEND = "org.backends.PasswordBackend"


class SignupForm(forms.Form):
    """The public sign-up form. ``website`` is a honeypot: hidden from people, filled by bots."""

    company = forms.CharField(label=_("Company name"), max_length=100)
    subdomain = forms.CharField(
        label=_("Subdomain"),
        max_length=32,
        help_text=_("3 to 32 letters a–z, digits or hyphens: your workspace's address."),
    )
    email = forms.EmailField(label=_("Your work e-mail"), max_length=150)
    password = forms.CharField(label=_("Password"), widget=forms.PasswordInput, max_length=128)
    website = forms.CharField(required=False, max_length=200)


def _base_url(request: HttpRequest) -> str:
    return f"{request.scheme}://{request.get_host()}"


@never_cache
@require_http_methods(["GET", "POST"])
def signup_page(request: HttpRequest) -> HttpResponse:
    """``/signup/`` on the platform domain (TEN-4): the form; a valid POST stores the sign-up,
    has the verification mail sent and shows "check your mail" (200). Errors are shown beside
    their field (200); too many sign-ups from one address: 429 with the message. A filled
    honeypot gets the same "check your mail" page and nothing is stored or sent. With
    ``WEIYU_SIGNUP`` off the page says sign-up is closed (403)."""
    context = {"domain": settings.WEIYU_SIGNUP_DOMAIN}
    if not settings.WEIYU_SIGNUP:
        return render(request, "public/signup_closed.html", context, status=403)
    form = SignupForm(request.POST if request.method == "POST" else None)
    status = 200
    if form.is_valid():
        data = form.cleaned_data
        if data["website"]:
            return render(request, "public/signup_sent.html", {"email": data["email"]})
        try:
            created = signup.signup_request(
                company=data["company"],
                subdomain=data["subdomain"],
                email=data["email"],
                password=data["password"],
                ip=request.META.get("REMOTE_ADDR", ""),
                language=translation.get_language() or settings.LANGUAGE_CODE,
                base_url=_base_url(request),
            )
        except RateLimitedError as exc:
            form.add_error(None, exc.message)
            status = 429
        except ServiceError as exc:
            field = exc.field if exc.field in form.fields else None
            form.add_error(field, exc.message)
        else:
            return render(request, "public/signup_sent.html", {"email": created.email})
    return render(request, "public/signup.html", {**context, "form": form}, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def signup_verify_page(request: HttpRequest, token: str) -> HttpResponse:
    """``/signup/verify/<token>/``, the link of the verification mail. GET: a page with one
    button (a mail scanner that opens links creates nothing); POST: provisions the tenant
    (:func:`tenants.signup.signup_verify`) and redirects (302) to its domain's one-time sign-in
    link, which lands on the getting-started page. A link already used: a page with the sign-in
    address of the workspace. Bad or expired link: 400 page."""
    try:
        pending = signup.signup_from_token(token)
    except ServiceError as exc:
        return render(request, "public/signup_invalid.html", {"message": exc.message}, status=400)
    if pending.tenant_id is not None:
        domain = pending.tenant.domains.filter(is_primary=True).first()
        base = tenant_public_url(request=request, domain=domain.domain) if domain else ""
        return render(request, "public/signup_done.html", {"signup": pending, "base_url": base})
    if request.method == "GET":
        return render(
            request,
            "public/signup_verify.html",
            {"signup": pending, "domain": signup.tenant_domain(pending.subdomain)},
        )
    try:
        done = signup.signup_verify(token=token)
    except ServiceError as exc:
        return render(request, "public/signup_invalid.html", {"message": exc.message}, status=409)
    domain = done.tenant.domains.get(is_primary=True).domain
    base = tenant_public_url(request=request, domain=domain)
    welcome = signup.welcome_token(tenant=done.tenant, username=done.email)
    return HttpResponseRedirect(f"{base}/signup/welcome/{welcome}/")


@never_cache
def signup_welcome(request: HttpRequest, token: str) -> HttpResponse:
    """``/signup/welcome/<token>/`` on the new tenant's domain: signs the new administrator in
    (once, within ten minutes: :func:`tenants.signup.welcome_user`) and redirects to
    ``/admin/onboarding/``; a used or expired link redirects to the sign-in page with
    ``next=/admin/onboarding/``."""
    try:
        user = signup.welcome_user(token=token)
    except ServiceError:
        return HttpResponseRedirect("/admin/login/?next=/admin/onboarding/")
    login(request, user, backend=_BACKEND)
    return HttpResponseRedirect("/admin/onboarding/")


def plan_usage_page(request: HttpRequest) -> HttpResponse:
    """``/admin/plan/`` in a tenant's back office (wrapped in ``admin_view``: staff only): the
    tenant's plan, its trial end, and each quota's use against its limit
    (:func:`tenants.quotas.usage_report`)."""
    from django.contrib import admin

    tenant = request.tenant
    context = {
        **admin.site.each_context(request),
        "title": _("Plan and usage"),
        "tenant": tenant,
        "plan": tenant.plan,
        "rows": quotas.usage_report(tenant),
    }
    return render(request, "admin/tenants/plan_usage.html", context)


def branding_logo(request: HttpRequest) -> HttpResponse:
    """``GET /branding/logo``: the tenant's logo (public: the widget, the help center and
    e-mail show it), with the content type checked at upload and ``nosniff``; 404 when there is
    none. Cached for an hour (the URLs that embed it change ``?v=`` with each upload)."""
    tenant = getattr(request, "tenant", None)
    brand = branding.brand_get(tenant_id=getattr(tenant, "pk", None))
    data = branding.logo_read(brand)
    if not data:
        raise Http404(_("No logo."))
    response = HttpResponse(data, content_type=brand.logo_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Disposition"] = "inline"
    response["Cache-Control"] = "public, max-age=3600"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


#: longest host name DNS allows (RFC 1035: 253 characters written out)
_HOST_MAX = 253


@require_http_methods(["GET"])
def tls_ask(request: HttpRequest) -> JsonResponse:
    """``GET /tls/ask?domain=<host>`` on the platform domain: whether Weiyu serves ``host``, for a
    TLS proxy that obtains certificates on demand (Caddy's ``on_demand_tls { ask … }``; the
    answer's status is what counts). ``200 {"allowed": true}`` for a domain of a tenant (its
    subdomain or a verified custom domain, suspended tenants included: they show their notice)
    or of the platform; ``404 {"allowed": false}`` for any other host; ``400 {"error":
    "invalid"}`` without a well-formed host. Anonymous, one indexed query, at most
    ``WEIYU_TLS_ASK_PER_IP_MINUTE`` per client address a minute (429 with ``Retry-After``), so it
    cannot be used to make the proxy ask for certificates in a loop (docs/operations.md, "Custom
    domains")."""
    host = request.GET.get("domain", "").strip().lower().rstrip(".")
    if not host or len(host) > _HOST_MAX or any(c in host for c in "/:@ \t"):
        return JsonResponse(
            {"error": "invalid", "message": _("Give a host name as ?domain=.")}, status=400
        )
    try:
        ratelimit.check(
            [
                ratelimit.Limit(
                    name="tls-ask",
                    key=request.META.get("REMOTE_ADDR", "") or "-",
                    limit=settings.WEIYU_TLS_ASK_PER_IP_MINUTE if settings.WEIYU_RATE_LIMITS else 0,
                    window_s=60,
                    message=lambda: _("Too many requests. Please wait a moment and try again."),
                )
            ]
        )
    except RateLimitedError as exc:
        answer = JsonResponse(
            {"error": "rate_limited", "message": exc.message, "retry_after": exc.retry_after_s},
            status=429,
        )
        answer["Retry-After"] = str(exc.retry_after_s)
        return answer
    allowed = Domain.objects.filter(domain=host).exists()
    return JsonResponse({"allowed": allowed}, status=200 if allowed else 404)
