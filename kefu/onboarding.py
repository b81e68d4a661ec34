"""The back office's getting-started page (``/admin/onboarding/``): what a new company's
administrator does first — create a widget channel, put its snippet on the website, invite
agents, add FAQ — as a checklist whose ticks come from the tenant's data, not from clicks.

A tenant administrator (role ``admin`` or superuser) lands there: the platform admin's sign-in
link points at it, and the back-office index sends them there once per browser session while
the tenant is untouched (no step done); the index shows the checklist above its app list until
every step is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from kbase.models import Article, FaqItem, KnowledgeBase
from kefu import embed
from kefu.models import Channel, Visitor
from kefu.services.channels import NAME_MAX, channel_start
from org.models import User
from weiyu.errors import ServiceError

#: session key: the getting-started page was shown in this browser session
SEEN_KEY = "weiyu_onboarding_seen"


@dataclass
class Step:
    """One line of the checklist: ``key`` (``channel``, ``snippet``, ``agents``, ``faq``),
    whether it is ``done``, and the links it offers (``(label, url)``)."""

    key: str
    title: str
    done: bool
    links: list[tuple[str, str]] = field(default_factory=list)


def is_tenant_admin(user: Any) -> bool:
    """Whether ``user`` runs the tenant (superuser or role ``admin``): who sees the checklist."""
    return bool(
        user.is_authenticated
        and user.is_active
        and (user.is_superuser or getattr(user, "role", "") == User.Role.ADMIN)
    )


def onboarding_steps(*, user: User) -> list[Step]:
    """The checklist for the current tenant, each step's ``done`` read from the database: an
    active channel exists; a visitor has opened a widget; another active agent or administrator
    than ``user`` exists; an FAQ item or a published article exists. At most six small queries."""
    first_kb = KnowledgeBase.objects.order_by("id").first()
    if first_kb is None:
        faq_links = [(_("Create a knowledge base"), reverse("admin:kbase_knowledgebase_add"))]
    else:
        faq_links = [
            (_("Add an FAQ item"), reverse("admin:kbase_faqitem_add")),
            (_("Write an article"), reverse("admin:kbase_article_add")),
        ]
    colleagues = User.objects.filter(
        is_active=True, role__in=[User.Role.AGENT, User.Role.ADMIN]
    ).exclude(pk=user.pk)
    return [
        Step(
            "channel",
            _("Create a chat channel for your website"),
            Channel.objects.filter(is_active=True).exists(),
            [(_("Create one in full"), reverse("admin:kefu_channel_add"))],
        ),
        Step("snippet", _("Put the chat on your website"), Visitor.objects.exists()),
        Step(
            "agents",
            _("Invite your agents"),
            colleagues.exists(),
            [(_("Add a user"), reverse("admin:org_user_add"))],
        ),
        Step(
            "faq",
            _("Add answers to common questions"),
            FaqItem.objects.exists()
            or Article.objects.filter(status=Article.Status.PUBLISHED).exists(),
            [*faq_links, (_("Open the help center"), reverse("kbase:help"))],
        ),
    ]


def _first_channel() -> Channel | None:
    return Channel.objects.filter(is_active=True, kind=Channel.Kind.WIDGET).order_by("id").first()


@require_http_methods(["GET", "POST"])
def onboarding_page(request: HttpRequest) -> HttpResponse:
    """``GET /admin/onboarding/``: the checklist, with the first channel's snippet, its Copy
    button and a link to a page carrying it. ``POST`` (``name``) creates a first channel with
    :func:`kefu.services.channels.channel_start` and comes back here (303); a bad name shows the
    page again with the error (400). Tenant administrators only (403 for other staff); wrapped
    in ``admin.site.admin_view`` (sign-in, CSRF, never cached)."""
    if not is_tenant_admin(request.user):
        raise PermissionDenied
    request.session[SEEN_KEY] = True
    error = ""
    status = 200
    if request.method == "POST":
        if not request.user.has_perm("kefu.add_channel"):
            raise PermissionDenied
        try:
            channel_start(name=request.POST.get("name", ""), user=request.user)
        except ServiceError as exc:
            error, status = exc.message, 400
        else:
            return HttpResponseRedirect(reverse("backoffice-onboarding"), status=303)
    steps = onboarding_steps(user=request.user)
    channel = _first_channel()
    snippet = preview = ""
    if channel is not None:
        domain = connection.tenant.get_primary_domain()
        base = embed.public_base_url(request=request, domain=domain.domain if domain else None)
        snippet = embed.snippet(base_url=base, channel_key=channel.public_key)
        preview = embed.preview_url(base_url=base, channel_key=channel.public_key)
    context = {
        **admin.site.each_context(request),
        "title": _("Get started"),
        "steps": steps,
        "done_count": sum(step.done for step in steps),
        "channel": channel,
        "snippet": snippet,
        "preview_url": preview,
        "channel_error": error,
        "name_max": NAME_MAX,
        "suggested_name": request.POST.get("name", "")
        or _("%(company)s website") % {"company": connection.tenant.name},
        "inbox_url": reverse("kefu:inbox"),
        "company_name": connection.tenant.name,
    }
    return TemplateResponse(request, "admin/onboarding.html", context, status=status)


def backoffice_index(
    request: HttpRequest, extra_context: dict[str, Any] | None = None
) -> HttpResponse:
    """``GET /admin/``: the back office's index, with the getting-started checklist above the
    app list while a step is open (tenant administrators). In a tenant where no step is done
    yet, the first visit of a browser session goes to :func:`onboarding_page` instead (302).
    ``extra_context``: more for the template (the dashboard, ``tickets.dashboard``)."""
    extra: dict[str, Any] = dict(extra_context or {})
    if is_tenant_admin(request.user):
        steps = onboarding_steps(user=request.user)
        if not all(step.done for step in steps):
            if not any(step.done for step in steps) and not request.session.get(SEEN_KEY):
                return HttpResponseRedirect(reverse("backoffice-onboarding"))
            extra["onboarding_steps"] = steps
            extra["onboarding_done"] = sum(s.done for s in steps)
    return admin.site.index(request, extra_context=extra)
