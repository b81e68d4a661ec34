"""Back office for tickets and SLAs: tickets with their comments and SLA clocks, SLA policies with
targets per priority (counted in the organisation's business calendars, :mod:`org.admin`),
categories, notifications.

Every save and delete goes through :mod:`tickets.services` (tickets through
:mod:`tickets.services.tickets`, so numbering, SLA clocks and notifications behave as in the inbox
and the API; categories, policies and deletions through :mod:`tickets.services.config`).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tickets import reports, selectors
from tickets.models import (
    Category,
    Comment,
    Notification,
    SlaClock,
    SlaPolicy,
    SlaTarget,
    Ticket,
)
from tickets.services import config
from tickets.services import tickets as ticket_services
from weiyu import reports as report_params
from weiyu.errors import ServiceError


class SlaTargetInline(admin.TabularInline):
    model = SlaTarget
    extra = 0


@admin.register(SlaPolicy)
class SlaPolicyAdmin(admin.ModelAdmin):
    list_display = ("name", "is_default", "calendar", "warning_percent", "supervisor")
    filter_horizontal = ("workgroups",)
    inlines = [SlaTargetInline]

    def save_model(self, request: HttpRequest, obj: SlaPolicy, form: Any, change: bool) -> None:
        """Saved with its workgroups and targets in one service call (:meth:`save_related`)."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        targets: list[SlaTarget] = []
        deleted: list[SlaTarget] = []
        for formset in formsets:
            targets += formset.save(commit=False)
            deleted += formset.deleted_objects
        config.sla_policy_save(
            policy=form.instance,
            workgroups=form.cleaned_data.get("workgroups"),
            targets=targets,
            deleted_targets=deleted,
        )

    def delete_model(self, request: HttpRequest, obj: SlaPolicy) -> None:
        config.sla_policies_delete(policy_ids=[obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[SlaPolicy]) -> None:
        config.sla_policies_delete(policy_ids=queryset.values_list("pk", flat=True))


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    search_fields = ("name",)

    def save_model(self, request: HttpRequest, obj: Category, form: Any, change: bool) -> None:
        config.category_save(category=obj)

    def delete_model(self, request: HttpRequest, obj: Category) -> None:
        config.categories_delete(category_ids=[obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Category]) -> None:
        config.categories_delete(category_ids=queryset.values_list("pk", flat=True))


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
        return str(selectors.clock_state(obj, timezone.now()))


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

    def get_queryset(self, request: HttpRequest) -> QuerySet[Ticket]:
        """What the person may see (``tickets.selectors.can_see``): a supervisor the tickets of
        the workgroups they supervise."""
        return selectors.visible(super().get_queryset(request), request.user)

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
        part. ``start``/``end`` are local dates (default: the last 30 days). Over every ticket
        for agents, administrators and auditors, over their workgroups' tickets for a
        supervisor (:func:`tickets.selectors.report_scope`); 403 otherwise."""
        try:
            scope = selectors.report_scope(request.user)
        except ServiceError:
            raise PermissionDenied from None
        try:
            start, end = report_params.date_range(request.GET)
            report = reports.build(start=start, end=end, workgroup_ids=scope)
        except ValueError:
            messages.error(request, report_params.range_message())
            start, end = report_params.default_range()
            report = reports.build(start=start, end=end, workgroup_ids=scope)
        part = report_params.csv_part(request.GET, reports.CSV_COLUMNS)
        if part is not None:
            reports.export_record(user=request.user, part=part, start=start, end=end)
            return report_params.csv_response(
                reports.csv_rows(report, part), f"tickets-{part}-{start}-{end}.csv"
            )
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
                ticket = ticket_services.ticket_create(
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
                elif name in ticket_services.EDITABLE:
                    changes[name] = value
            if changes:
                ticket_services.ticket_update(ticket_id=obj.pk, actor=request.user, changes=changes)
        except ServiceError as exc:
            messages.error(request, exc.message)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Writes nothing: the service saved the ticket, the form has no many-to-many fields and
        the inlines (comments, clocks) are read-only; the formsets' save only records for the
        admin's history that nothing in them changed."""
        if form.instance.pk:
            super().save_related(request, form, formsets, change)

    def delete_model(self, request: HttpRequest, obj: Ticket) -> None:
        config.tickets_delete(ticket_ids=[obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> None:
        config.tickets_delete(ticket_ids=queryset.values_list("pk", flat=True))


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "recipient", "kind", "text", "read_at")
    list_filter = ("kind",)
    readonly_fields = ("recipient", "kind", "ticket", "clock", "text", "created_at", "read_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Notification, form: Any, change: bool) -> None:
        """Every field is read-only: there is nothing to save."""

    def delete_model(self, request: HttpRequest, obj: Notification) -> None:
        config.notifications_delete(notification_ids=[obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        config.notifications_delete(notification_ids=queryset.values_list("pk", flat=True))
