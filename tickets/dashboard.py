"""The back office's landing page (``GET /admin/``): a dashboard for supervisors and the
back office's pages in named groups with icons and a search box, with links to the inbox, the
monitor, the statistics and the reports.

It lives in the top app because it shows both customer service (:mod:`kefu.dashboard`) and the
tickets' SLA attainment (:func:`tickets.reports.build`, ``GET /api/v1/tickets/reports``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from kefu import dashboard as kefu_dashboard
from kefu import monitor, onboarding
from tickets import reports, selectors
from weiyu.errors import ServiceError

#: 24x24 outline icons (SVG path data) of the navigation groups
_ICONS = {
    "chat": "M4 5h16v11H8l-4 4z",
    "route": "M6 3v12a3 3 0 0 0 3 3h9M15 15l3 3-3 3M6 3 3 6M6 3l3 3",
    "ticket": "M3 7h18v3a2 2 0 0 0 0 4v3H3v-3a2 2 0 0 0 0-4zM9 7v10",
    "book": "M4 4h7a3 3 0 0 1 3 3v13a2 2 0 0 0-2-2H4zM20 4h-4a3 3 0 0 0-3 3",
    "people": "M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM2 21a7 7 0 0 1 14 0M17 11a3 3 0 1 0 0-6M22 21a6 6 0 0 0-4-6",
    "chart": "M4 20V10M10 20V4M16 20v-7M22 20H2",
    "lock": "M5 11h14v10H5zM8 11V7a4 4 0 0 1 8 0v4",
    "more": "M5 12h.01M12 12h.01M19 12h.01",
}

#: (group title, icon, models as ``app_label.ModelName`` or ``app_label.*``), in the order shown;
#: a page not named here goes under "More"
GROUPS: list[tuple[Any, str, list[str]]] = [
    (gettext_lazy("Conversations"), "chat", [
        "kefu.Session", "kefu.Visitor", "kefu.VisitorTag", "kefu.Transfer", "kefu.BlockedVisitor",
        "im.Conversation", "im.Message", "im.Attachment",
    ]),
    (gettext_lazy("Channels and routing"), "route", [
        "kefu.Channel", "kefu.Workgroup", "kefu.Skill", "kefu.AgentState", "kefu.AutoReply",
        "kefu.CannedResponse", "kefu.SensitiveWord", "org.BusinessCalendar",
    ]),
    (gettext_lazy("Tickets"), "ticket", ["tickets.*"]),
    (gettext_lazy("Knowledge base and AI"), "book", ["kbase.*"]),
    (gettext_lazy("Team"), "people", [
        "org.User", "org.Role", "org.Department", "im.MessagingSettings", "im.Sticker",
    ]),
    (gettext_lazy("Statistics"), "chart", ["kefu.DailyStat"]),
    (gettext_lazy("Security and audit"), "lock", [
        "org.ApiKey", "org.AuditEntry", "org.SecuritySettings", "org.VisitorLimits", "axes.*",
        "otp_static.*", "otp_totp.*", "auditlog.*",
    ]),
]  # fmt: skip


@dataclass
class NavGroup:
    """A titled group of back-office pages: ``entries`` = [{"name", "url", "add_url"}]."""

    title: str
    icon: str
    entries: list[dict[str, Any]] = field(default_factory=list)


def _group_of(app_label: str, object_name: str) -> int:
    for index, (_title, _icon, names) in enumerate(GROUPS):
        if f"{app_label}.{object_name}" in names or f"{app_label}.*" in names:
            return index
    return len(GROUPS)


def navigation(request: HttpRequest) -> list[NavGroup]:
    """The pages the user may open (the admin's own app list), in :data:`GROUPS`; empty groups
    left out."""
    groups = [NavGroup(title=str(t), icon=_ICONS[i]) for t, i, _names in GROUPS]
    groups.append(NavGroup(title=_("More"), icon=_ICONS["more"]))
    for app in admin.site.get_app_list(request):
        for model in app["models"]:
            groups[_group_of(app["app_label"], model["object_name"])].entries.append(
                {
                    "name": model["name"],
                    "url": model.get("admin_url"),
                    "add_url": model.get("add_url"),
                }
            )
    return [g for g in groups if g.entries]


def _url(name: str) -> str | None:
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


def links(user: Any) -> list[dict[str, str]]:
    """``[{"title", "url", "id"}]``: the inbox, and for supervisors the monitor, the statistics
    and the ticket reports."""
    out = [{"id": "inbox", "title": _("Inbox"), "url": reverse("kefu:inbox")}]
    if monitor.is_supervisor(user):
        out += [
            {"id": "monitor", "title": _("Live monitor"), "url": reverse("kefu:monitor")},
            {
                "id": "statistics",
                "title": _("Customer-service statistics"),
                "url": reverse("admin:kefu_session_reports"),
            },
        ]
    reports_url = _url("admin:tickets_ticket_reports")
    if reports_url and user.has_perm("tickets.view_ticket") and _sees_reports(user):
        out.append({"id": "reports", "title": _("Ticket reports"), "url": reports_url})
    return out


def _sees_reports(user: Any) -> bool:
    try:
        selectors.report_scope(user)
    except ServiceError:
        return False
    return True


def sla_attainment(
    *, start: dt.date, end: dt.date, workgroup_ids: set[int] | None = None
) -> dict[str, Any]:
    """``{"finished", "met", "attainment_pct"}`` over every SLA policy and target of
    :func:`tickets.reports.build` (clocks that finished from ``start`` to ``end``; of the
    tickets of ``workgroup_ids`` when given); ``attainment_pct`` 0-100 (one decimal) or None when
    no clock finished."""
    rows = reports.build(start=start, end=end, workgroup_ids=workgroup_ids)["sla"]
    finished = sum(r["finished"] for r in rows)
    met = sum(r["met"] for r in rows)
    return {
        "finished": finished,
        "met": met,
        "attainment_pct": round(100 * met / finished, 1) if finished else None,
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = round(seconds)
    if seconds < 60:
        return _("%(s)d s") % {"s": seconds}
    if seconds < 3600:
        return _("%(m)d min %(s)d s") % {"m": seconds // 60, "s": seconds % 60}
    return _("%(h)d h %(m)d min") % {"h": seconds // 3600, "m": seconds % 3600 // 60}


def dashboard(user: Any) -> dict[str, Any]:
    """The supervisor's figures (:func:`kefu.dashboard.figures` and :func:`sla_attainment` over
    the same days) with display text, and the busiest-hours chart's bars."""
    data = kefu_dashboard.figures(user=user)
    week = data["week"]
    start, end = dt.date.fromisoformat(data["start"]), dt.date.fromisoformat(data["today"])
    # a supervisor's attainment is over their workgroups' tickets, like their other figures
    sla = (
        sla_attainment(start=start, end=end, workgroup_ids=selectors.report_scope(user))
        if _sees_reports(user)
        else {"finished": 0, "met": 0, "attainment_pct": None}
    )
    top = max(data["hours"]) or 1
    data["sla"] = sla
    data["cards"] = [
        ("conversations_today", _("Conversations today"), data["conversations_today"],
         str(data["conversations_today"])),
        ("waiting_now", _("Waiting now"), data["waiting_now"], str(data["waiting_now"])),
        ("first_response_avg_s", _("First response (7 days)"), week["first_response_avg_s"],
         _duration(week["first_response_avg_s"])),
        ("resolution_avg_s", _("Resolution time (7 days)"), week["resolution_avg_s"],
         _duration(week["resolution_avg_s"])),
        ("csat_avg", _("CSAT (7 days)"), week["csat_avg"],
         f"{week['csat_avg']} / 5" if week["csat_avg"] is not None else "–"),
        ("sla_attainment_pct", _("Ticket SLA attained (7 days)"), sla["attainment_pct"],
         f"{sla['attainment_pct']} %" if sla["attainment_pct"] is not None else "–"),
    ]  # fmt: skip
    data["bars"] = [
        {"hour": h, "count": n, "pct": round(100 * n / top)} for h, n in enumerate(data["hours"])
    ]
    return data


def backoffice_index(request: HttpRequest) -> HttpResponse:
    """``GET /admin/`` of a tenant: :func:`kefu.onboarding.backoffice_index` with the grouped
    navigation, the links, and for supervisors the dashboard."""
    extra: dict[str, Any] = {"nav_groups": navigation(request), "links": links(request.user)}
    if monitor.is_supervisor(request.user):
        extra["dashboard"] = dashboard(request.user)
    return onboarding.backoffice_index(request, extra_context=extra)
