"""The back office of LDAP / Active Directory sync (Organisation → LDAP directory): the tenant's
:class:`org.models.LdapDirectory` row, with "Test connection" and "Sync now" (dry run or real)
showing the same report as the file import (org.ldap_sync). Registered from ``org.admin``."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.translation import gettext_lazy as _

from org import ldap_sync
from org.models import LdapDirectory
from weiyu.errors import ServiceError


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


class LdapDirectoryForm(forms.ModelForm):
    """The settings; the bind password is never shown back (empty keeps the stored one). The
    server URL must be ldap:// or ldaps:// and pass the outgoing-request rules; filters are
    parenthesised."""

    bind_password = forms.CharField(
        label=_("bind password"),
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Stored encrypted; leave empty to keep the current one."),
    )

    class Meta:
        model = LdapDirectory
        exclude: tuple[str, ...] = ()

    def clean_bind_password(self) -> str:
        value = self.cleaned_data.get("bind_password") or ""
        return value or (self.instance.bind_password if self.instance.pk else "")

    def clean_server_url(self) -> str:
        value = (self.cleaned_data.get("server_url") or "").strip()
        try:
            ldap_sync.server_check(value)
        except ServiceError as exc:
            raise forms.ValidationError(exc.message) from None
        return value

    def _filter(self, name: str) -> str:
        value = (self.cleaned_data.get(name) or "").strip()
        if not (value.startswith("(") and value.endswith(")") and _balanced(value)):
            raise forms.ValidationError(_("An LDAP filter in parentheses, e.g. (objectClass=*)."))
        return value

    def clean_people_filter(self) -> str:
        return self._filter("people_filter")

    def clean_departments_filter(self) -> str:
        return self._filter("departments_filter")


class LdapDirectoryAdmin(admin.ModelAdmin):
    """LDAP / Active Directory sync (docs/operations.md, "Directory sync"). One row; its page
    has "Test connection", "Sync now (dry run)" and "Sync now" below the form (they use the
    saved settings); changes are in the audit log (never the password)."""

    form = LdapDirectoryForm
    change_form_template = "admin/org/ldapdirectory/change_form.html"
    list_display = ("__str__", "server_url", "enabled", "interval_minutes", "last_sync_at")
    readonly_fields = ("last_sync_at", "last_outcome")

    @admin.display(description=_("last report"))
    def last_outcome(self, obj: LdapDirectory) -> str:
        """The counts of the last real sync, and why it failed when it did."""
        report = obj.last_report or {}
        if not report:
            return "—"
        errors = report.get("errors") or []
        text = _(
            "%(created)d created, %(updated)d updated, %(disabled)d disabled, %(errors)d errors"
        ) % {
            "created": len(report.get("created") or []),
            "updated": len(report.get("updated") or []),
            "disabled": len(report.get("disabled") or []),
            "errors": len(errors),
        }
        if errors and errors[0].get("line") == 0:
            text = f"{text}: {errors[0].get('message', '')}"
        return text

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not LdapDirectory.objects.exists()

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view(self.run_view)
        return [path("<int:pk>/run/", view, name="org_ldapdirectory_run"), *super().get_urls()]

    def run_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """``POST /admin/org/ldapdirectory/<pk>/run/`` with ``action`` = ``test``,
        ``dry_run`` or ``sync``: test the connection, or sync now, with the saved settings;
        the page shows the outcome (the report of a sync, errors by entry). Administrators who
        may change the settings; others 403; GET 405; another action 400."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        row = get_object_or_404(LdapDirectory, pk=pk)
        action = request.POST.get("action")
        context = {
            **self.admin_site.each_context(request),
            "opts": LdapDirectory._meta,
            "original": row,
            "title": _("LDAP directory"),
            "line_label": _("entry"),
            "done_label": _("Synced"),
        }
        if action == "test":
            try:
                context["outcome"] = ldap_sync.connection_test(row)
            except ServiceError as exc:
                context["failure"] = exc.message
        elif action in ("dry_run", "sync"):
            context["report"] = ldap_sync.ldap_sync(
                row=row, dry_run=action == "dry_run", actor=request.user
            )
        else:
            context["failure"] = _("Unknown action.")
            return TemplateResponse(
                request, "admin/org/ldapdirectory/run.html", context, status=400
            )
        return TemplateResponse(request, "admin/org/ldapdirectory/run.html", context)


admin.site.register(LdapDirectory, LdapDirectoryAdmin)
