"""Back office for tickets and SLAs: tickets with their comments and SLA clocks, SLA policies with
targets per priority (counted in the organisation's business calendars, :mod:`org.admin`),
categories, notifications.

Tickets are created and changed through :mod:`tickets.services`, so numbering, SLA clocks and
notifications behave as in the inbox and the API.
"""

from __future__ import annotations

import csv
import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tickets import reports, services, sla
from tickets.models import (
    Category,
    Comment,
    Notification,
    SlaClock,
    SlaPolicy,
    SlaTarget,
    Ticket,
)
from weiyu.errors import ServiceError


class SlaTargetInline(admin.TabularInline):
    model = SlaTarget
    extra = 0


@admin.register(SlaPolicy)
class SlaPolicyAdmin(admin.ModelAdmin):
    list_display = ("name", "is_default", "calendar", "warning_percent", "supervisor")
    filter_horizontal = ("workgroups",)
    inlines = [SlaTargetInline]


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    search_fields = ("name",)


class CommentInline(admin.StackedInline):
    model = Comment
    extra = 0
    fields = ("created_at", "author_user", "author_visitor", "public", "body")
    readonly_fields = ("created_at", "author_user", "author_visitor", "public", "body")
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SlaClockInline(admin.TabularInline):
    model = SlaClock
    extra = 0
    fields = ("kind", "state", "target_s", "elapsed_s", "due_at", "met_at", "breached_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("state"))
    def state(self, obj: SlaClock) -> str:
        return str(sla.clock_state(obj, timezone.now()))


class TicketForm(forms.ModelForm):
    body = forms.CharField(
        label=_("Description"),
        widget=forms.Textarea,
        required=False,
        help_text=_("The first comment (new tickets only)."),
    )

    class Meta:
        model = Ticket
        fields = (
            "subject",
            "status",
            "priority",
            "requester_user",
            "requester_visitor",
            "requester_email",
            "assignee",
            "workgroup",
            "category",
            "tags",
            "due_at",
        )


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    form = TicketForm
    list_display = (
        "number",
        "subject",
        "status",
        "priority",
        "assignee",
        "workgroup",
        "created_at",
    )
    list_filter = ("status", "priority", "workgroup", "category", "source")
    search_fields = ("subject", "=number", "requester_email")
    autocomplete_fields = ("requester_visitor",)
    readonly_fields = ("number", "source", "sla_policy", "merged_into", "created_at", "solved_at")
    inlines = [CommentInline, SlaClockInline]
    date_hierarchy = "created_at"
    change_list_template = "admin/tickets/ticket/change_list.html"

    def get_urls(self) -> list[Any]:
        return [
            path(
                "reports/",
                self.admin_site.admin_view(self.reports_view),
                name="tickets_ticket_reports",
            ),
            *super().get_urls(),
        ]

    def reports_view(self, request: HttpRequest) -> HttpResponse:
        """Ticket reports (TK-4) with charts; ``?export=csv&part=<daily|agents|…>`` exports one
        part. ``start``/``end`` are local dates (default: the last 30 days)."""
        today = timezone.localdate()
        try:
            end = dt.date.fromisoformat(request.GET.get("end") or today.isoformat())
            start = dt.date.fromisoformat(
                request.GET.get("start") or (end - dt.timedelta(days=29)).isoformat()
            )
            report = reports.build(start=start, end=end)
        except ValueError:
            messages.error(request, _("Give a start and an end date (at most a year apart)."))
            end, start = today, today - dt.timedelta(days=29)
            report = reports.build(start=start, end=end)
        if request.GET.get("export") == "csv":
            part = request.GET.get("part", "daily")
            if part not in reports.CSV_COLUMNS:
                part = "daily"
            response = HttpResponse(content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = (
                f'attachment; filename="tickets-{part}-{start}-{end}.csv"'
            )
            response.write("\ufeff")  # Excel opens UTF-8 (Chinese names) correctly with a BOM
            csv.writer(response).writerows(reports.csv_rows(report, part))
            return response
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Ticket reports"),
            "report": report,
            "start": start,
            "end": end,
            "parts": list(reports.CSV_COLUMNS),
        }
        return TemplateResponse(request, "admin/tickets/ticket/reports.html", context)

    def save_model(self, request: HttpRequest, obj: Ticket, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            if not change:
                ticket = services.ticket_create(
                    subject=data["subject"],
                    body=data.get("body") or data["subject"],
                    source=Ticket.Source.ADMIN,
                    creator=request.user,
                    requester_visitor=data.get("requester_visitor"),
                    requester_user_id=data["requester_user"].pk
                    if data.get("requester_user")
                    else None,
                    requester_email=data.get("requester_email") or "",
                    priority=data["priority"],
                    assignee_id=data["assignee"].pk if data.get("assignee") else None,
                    workgroup_id=data["workgroup"].pk if data.get("workgroup") else None,
                    category_id=data["category"].pk if data.get("category") else None,
                    tags=data.get("tags") or [],
                    due_at=data["due_at"].isoformat() if data.get("due_at") else None,
                )
                obj.pk = ticket.pk
                obj.number = ticket.number
                return
            ids = {
                "assignee": "assignee_id",
                "workgroup": "workgroup_id",
                "category": "category_id",
            }
            changes: dict[str, Any] = {}
            for name in form.changed_data:
                value = data.get(name)
                if name in ids:
                    changes[ids[name]] = value.pk if value is not None else None
                elif name == "due_at":
                    changes[name] = value.isoformat() if value else None
                elif name in services.EDITABLE:
                    changes[name] = value
            if changes:
                services.ticket_update(ticket_id=obj.pk, actor=request.user, changes=changes)
        except ServiceError as exc:
            messages.error(request, exc.message)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        if form.instance.pk:
            super().save_related(request, form, formsets, change)


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "recipient", "kind", "text", "read_at")
    list_filter = ("kind",)
    readonly_fields = ("recipient", "kind", "ticket", "clock", "text", "created_at", "read_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
