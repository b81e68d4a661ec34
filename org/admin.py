"""Tenant back office for people and the organisation: users (admins, agents, staff), the
department tree with its members and heads, business calendars (hours and holidays) that SLA
policies and workgroups' work hours count in, and the read-only audit log."""

import csv
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import auditlog.admin  # registers django-auditlog's own admin, replaced below  # noqa: F401
from auditlog.models import LogEntry
from auditlog.render import get_field_verbose_name
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext, pgettext_lazy
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin  # registers django-otp's admin
from django_otp.plugins.otp_totp.models import TOTPDevice
from treebeard.admin import TreeAdmin
from treebeard.forms import movenodeform_factory

from org import admin_directory, apikeys, audit, limits, securitykeys, services, twofactor
from org.models import (
    ACTION_LABELS,
    AlertPreferences,
    ApiKey,
    AuditEntry,
    BusinessCalendar,
    BusinessHours,
    Department,
    DepartmentMember,
    Holiday,
    PushSubscription,
    Role,
    SecurityKey,
    SecuritySettings,
    User,
    VisitorLimits,
)
from tenants import quotas
from tenants.admin import platform_admin_site
from weiyu.errors import ServiceError


class UserDepartmentInline(admin.TabularInline):
    model = DepartmentMember
    extra = 0
    fields = ("department", "is_head", "is_primary")
    autocomplete_fields = ("department",)
    verbose_name = _("department")
    verbose_name_plural = _("departments")


class DeleteKeepingHistory:
    """For a user admin: unticking "active" disables the user and "Delete" deletes keeping
    history (:func:`org.services.user_deactivate` / :func:`~org.services.user_delete`); nothing
    they took part in is removed, and nobody deletes themselves."""

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        if change and "is_active" in form.changed_data and not obj.is_active:
            services.user_deactivate(user=obj)  # hands their live work on

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        if obj is not None and (obj.pk == request.user.pk or obj.deleted_at is not None):
            return False  # not yourself; a deleted user is already gone
        return super().has_delete_permission(request, obj)  # type: ignore[misc]

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple:
        """The confirmation page lists only the users: nothing else is deleted with them."""
        users = [u for u in objs if u.pk != request.user.pk and u.deleted_at is None]
        summary = {str(User._meta.verbose_name_plural): len(users)}
        return [str(u) for u in users], summary, set(), []

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        services.user_delete(user=obj)
        self._kept_message(request, 1)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        users = [u for u in queryset if u.pk != request.user.pk and u.deleted_at is None]
        for user in users:
            services.user_delete(user=user)
        self._kept_message(request, len(users))

    def _kept_message(self, request: HttpRequest, count: int) -> None:
        messages.info(
            request,
            ngettext(
                "%(n)d user deleted. Their conversations, messages, tickets and statistics are "
                "kept under their name.",
                "%(n)d users deleted. Their conversations, messages, tickets and statistics are "
                "kept under their names.",
                count,
            )
            % {"n": count},
        )


class SeatCheckedUserChangeForm(UserChangeForm):
    """The back office's user form: ticking "active" again for a disabled user takes a seat of
    the plan (tenants.quotas), refused beside the field when none is free."""

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        user = self.instance
        reactivated = (
            user.pk is not None
            and data.get("is_active")
            and not User.objects.filter(pk=user.pk, is_active=True).exists()
        )
        if reactivated:
            try:
                quotas.check_total("seats")
            except ServiceError as exc:
                self.add_error("is_active", exc.message)
        if data.get("role") == User.Role.AUDITOR and data.get("is_superuser"):
            # a superuser holds every permission: an auditor must not (docs/security.md "Roles")
            self.add_error("is_superuser", _("An auditor cannot be a superuser."))
        return data


@admin.register(User)
class UserAdmin(DeleteKeepingHistory, BaseUserAdmin):
    form = SeatCheckedUserChangeForm
    list_display = (
        "username",
        "display_name",
        "title",
        "email",
        "role",
        "is_active",
        "is_staff",
        "last_login",
    )
    list_filter = (
        "role",
        "is_active",
        ("deleted_at", admin.EmptyFieldListFilter),
        "is_staff",
        "is_superuser",
        "departments__department",
    )
    readonly_fields = ("deleted_at",)
    search_fields = (
        "username",
        "display_name",
        "first_name",
        "last_name",
        "email",
        "title",
        "external_id",
    )
    fieldsets = (
        *BaseUserAdmin.fieldsets,
        (
            _("Weiyu"),
            {
                "fields": (
                    "role",
                    "display_name",
                    "title",
                    "phone",
                    "language",
                    "external_id",
                    "deleted_at",
                )
            },
        ),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "display_name", "role", "password1", "password2"),
            },
        ),
    )
    inlines = [UserDepartmentInline]

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        """``groups`` are the person's custom roles (:class:`org.models.Role`)."""
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if db_field.name == "groups" and field is not None:
            field.label = _("custom roles")
            field.help_text = _(
                "Each custom role grants its permissions in the back office (with staff "
                "status). Define them under Organisation → Custom roles."
            )
        return field

    def get_urls(self) -> list[Any]:
        """``import/``: "Import directory" (org.admin_directory), before the object URLs."""
        view = self.admin_site.admin_view(admin_directory.import_view)
        return [path("import/", view, name="org_user_import"), *super().get_urls()]

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        """The plan's seats (tenants.quotas): when every seat is taken, "Add user" goes back to
        the list with a message saying so instead of showing the form."""
        try:
            quotas.check_total("seats")
        except ServiceError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(reverse("admin:org_user_changelist"))
        return super().add_view(request, form_url, extra_context)


#: apps whose permissions a custom role can grant: the product's, not the framework's plumbing
ROLE_PERMISSION_APPS = ("org", "im", "kefu", "tickets", "kbase", "webhooks", "auditlog", "auth")


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    """Custom roles (docs/security.md "Roles"): a name and the Django permissions it grants
    (``view``, ``add``, ``change``, ``delete`` per kind of object); assigned to people on
    their user page ("custom roles"). Changes are recorded in the audit log."""

    list_display = ("name", "permission_count", "member_count")
    search_fields = ("name",)
    fields = ("name", "permissions")
    filter_horizontal = ("permissions",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Role]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_perms=Count("permissions", distinct=True), n_users=Count("user", distinct=True)
            )
        )

    @admin.display(description=_("permissions"), ordering="n_perms")
    def permission_count(self, obj: Any) -> int:
        return obj.n_perms

    @admin.display(description=_("people"), ordering="n_users")
    def member_count(self, obj: Any) -> int:
        return obj.n_users

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "permissions":
            kwargs["queryset"] = Permission.objects.filter(
                content_type__app_label__in=ROLE_PERMISSION_APPS
            ).select_related("content_type")
        return super().formfield_for_manytomany(db_field, request, **kwargs)


if admin.site.is_registered(Group):
    admin.site.unregister(Group)  # custom roles are the groups of this back office


class PlatformUserAdmin(DeleteKeepingHistory, BaseUserAdmin):
    """Platform admins (users of the ``public`` schema) on the platform admin site that tenants
    defines; deleting one keeps the row (org.services.user_delete), like tenant users: the admin
    log and tenants they created still point at it."""


platform_admin_site.register(User, PlatformUserAdmin)


class DepartmentMemberInline(admin.TabularInline):
    model = DepartmentMember
    extra = 1
    fields = ("user", "is_head", "is_primary")
    autocomplete_fields = ("user",)


@admin.register(Department)
class DepartmentAdmin(TreeAdmin):
    """The organisation tree: drag to move, add sub-departments, members and heads."""

    form = movenodeform_factory(Department)
    list_display = ("name", "member_count")
    search_fields = ("name",)
    inlines = [DepartmentMemberInline]

    @admin.display(description=_("members"))
    def member_count(self, obj: Department) -> int:
        return obj.memberships.count()


class BusinessHoursInline(admin.TabularInline):
    model = BusinessHours
    extra = 0


class HolidayInline(admin.TabularInline):
    model = Holiday
    extra = 0


@admin.register(BusinessCalendar)
class BusinessCalendarAdmin(admin.ModelAdmin):
    list_display = ("name", "timezone", "weekly_hours", "holiday_count")
    inlines = [BusinessHoursInline, HolidayInline]

    @admin.display(description=_("hours a week"))
    def weekly_hours(self, obj: BusinessCalendar) -> str:
        minutes = sum(h.end_minute - h.start_minute for h in obj.hours.all())
        return f"{minutes / 60:g}"

    @admin.display(description=_("holidays"))
    def holiday_count(self, obj: BusinessCalendar) -> int:
        return obj.holidays.count()


@admin.register(VisitorLimits)
class VisitorLimitsAdmin(admin.ModelAdmin):
    """The tenant's rate limits on anonymous visitors: one row; an empty field is the platform
    default, shown beside it (docs/security.md, "Rate limits")."""

    list_display = ("__str__", "sessions_per_ip_minute", "messages_per_visitor_minute")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not VisitorLimits.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        VisitorLimits.current()
        return super().changelist_view(request, extra_context)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change, **kwargs)
        for name, field in form.base_fields.items():
            default = settings.WEIYU_VISITOR_LIMITS.get(name)
            if default is not None:
                field.help_text = _("Empty: the platform default, %(n)s. 0 turns it off.") % {
                    "n": default
                }
        return form

    def save_model(self, request: HttpRequest, obj: VisitorLimits, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        limits.forget(connection.schema_name)


class ApiKeyAddForm(forms.ModelForm):
    """A new system key: its name, scopes, expiry, allowed addresses and rate limit."""

    scopes = forms.MultipleChoiceField(
        label=_("scopes"),
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Write includes read."),
    )

    class Meta:
        model = ApiKey
        fields = ("name", "scopes", "expires_at", "allowed_ips", "rate_per_minute")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["scopes"].choices = [
            (f"{family}:{access}", f"{label} — {access_label}")
            for family, label in apikeys.FAMILIES.items()
            for access, access_label in apikeys.ACCESS.items()
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        try:
            self.cleaned_fields = apikeys.api_key_validate(
                name=data.get("name"),
                scopes=data.get("scopes") or [],
                expires_at=data.get("expires_at"),
                allowed_ips=data.get("allowed_ips") or "",
                rate=data.get("rate_per_minute"),
            )
        except ServiceError as exc:
            raise forms.ValidationError({exc.field or "__all__": exc.message}) from None
        return data


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """System API keys (created here; the token is shown once, on the page after saving) and
    everyone's personal tokens: listed with their last use, revoked with the list's action.
    Keys are never edited or deleted: revoke one and create another."""

    list_display = (
        "name",
        "kind",
        "user",
        "token_prefix",
        "scope_list",
        "expires_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("kind",)
    search_fields = ("name", "prefix", "user__username")
    actions = ("revoke",)
    form = ApiKeyAddForm
    readonly_fields = ("token_prefix", "kind", "user", "created_at", "last_used_at", "revoked_at")

    @admin.display(description=_("token"))
    def token_prefix(self, obj: ApiKey) -> str:
        return f"wy_{obj.prefix}_…"

    @admin.display(description=_("scopes"))
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return ApiKeyAddForm.Meta.fields
        return (
            "name",
            "kind",
            "user",
            "token_prefix",
            "scope_list",
            "expires_at",
            "allowed_ips",
            "rate_per_minute",
            "created_at",
            "last_used_at",
            "revoked_at",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        return () if obj is None else self.get_fields(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Administrators (``role`` admin, or superusers): a system key acts as its creator."""
        user = request.user
        return super().has_add_permission(request) and (
            user.is_superuser or getattr(user, "role", "") == User.Role.ADMIN
        )

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        key, token = apikeys.api_key_create(
            kind=ApiKey.Kind.SYSTEM,
            user=request.user,
            name=form.cleaned_fields["name"],
            scopes=form.cleaned_fields["scopes"],
            expires_at=form.cleaned_fields["expires_at"],
            allowed_ips=form.cleaned_fields["allowed_ips"],
            rate_per_minute=form.cleaned_fields["rate_per_minute"],
        )
        obj.pk, obj.prefix, obj.user, obj.kind = key.pk, key.prefix, key.user, key.kind
        obj.scopes, obj.created_at = key.scopes, key.created_at
        obj._state.adding = False
        request._api_key_token = token  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: Any = None):
        """The page showing the token, once (never stored, never in a message cookie)."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "key": obj,
            "token": request._api_key_token,  # type: ignore[attr-defined]
            "title": obj.name,
        }
        response = TemplateResponse(request, "admin/org/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        if obj is not None:
            kwargs["form"] = forms.ModelForm
        return super().get_form(request, obj, change, **kwargs)

    @admin.action(description=_("Revoke the selected keys"))
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            apikeys.api_key_revoke(key=key)
            count += 1
        self.message_user(
            request,
            ngettext("%(n)d key revoked.", "%(n)d keys revoked.", count) % {"n": count},
            messages.SUCCESS,
        )


@admin.register(SecuritySettings)
class SecuritySettingsAdmin(admin.ModelAdmin):
    """The tenant's sign-in rules: who must use two-factor sign-in and the password policy
    (docs/security.md, "Two-factor authentication", "Passwords"). One row."""

    list_display = (
        "__str__",
        "two_factor_required",
        "password_min_length",
        "password_character_classes",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not SecuritySettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        SecuritySettings.current()
        return super().changelist_view(request, extra_context)

    def save_model(
        self, request: HttpRequest, obj: SecuritySettings, form: Any, change: bool
    ) -> None:
        twofactor.settings_save(obj)


# the platform's own rule, for the platform admins (public schema)
platform_admin_site.register(SecuritySettings, SecuritySettingsAdmin)


class SecurityKeyAdmin(admin.ModelAdmin):
    """Users' security keys (WebAuthn, :mod:`org.securitykeys`): listed with their domain and
    last use, and removed when one is lost (the user then signs in with another factor, or
    is sent to set one up if the rule covers them). Keys are added only by their owner, on the
    security page; nothing here can be edited."""

    list_display = ("name", "user", "rp_id", "created_at", "last_used_at")
    list_filter = ("rp_id",)
    search_fields = ("name", "user__username")
    list_select_related = ("user",)
    fields = ("user", "name", "rp_id", "aaguid", "transports", "created_at", "last_used_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: SecurityKey) -> None:
        securitykeys.key_delete(user=obj.user, key_id=obj.pk, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for key in queryset.select_related("user"):
            self.delete_model(request, key)


admin.site.register(SecurityKey, SecurityKeyAdmin)


@admin.register(AlertPreferences)
class AlertPreferencesAdmin(admin.ModelAdmin):
    """People's alerts when away (:mod:`org.alerts`, docs/inbox.md): the web push kinds, the
    e-mail digest delay and quiet while an inbox is open. Each person sets their own on the
    inbox's Alerts page; an admin may change them here (e.g. turn a digest off)."""

    list_display = (
        "user",
        "push_assignment",
        "push_transfer",
        "push_mention",
        "push_sla",
        "digest_after_minutes",
        "quiet_when_inbox_open",
    )
    list_filter = ("quiet_when_inbox_open",)
    search_fields = ("user__username", "user__display_name")
    list_select_related = ("user",)
    autocomplete_fields = ("user",)


@admin.register(PushSubscription)
class PushSubscriptionAdmin(admin.ModelAdmin):
    """The browsers web push alerts go to (:mod:`org.push`): listed, and removed (a lost
    device); only a person's own browser adds one, from the Alerts page."""

    list_display = ("user", "push_service", "user_agent", "created_at", "last_sent_at")
    search_fields = ("user__username", "user__display_name")
    list_select_related = ("user",)
    fields = ("user", "push_service", "user_agent", "created_at", "last_sent_at")
    readonly_fields = fields

    @admin.display(description=_("push service"))
    def push_service(self, obj: PushSubscription) -> str:
        """The push service's host (the rest of the address is the browser's secret)."""
        return urlsplit(obj.endpoint).netloc

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SealedTOTPDeviceAdmin(TOTPDeviceAdmin):
    """django-otp's TOTP devices (list, delete a lost phone's) without *Add*: an authenticator
    is set up by its owner on the security page, where its key is kept encrypted; one typed in
    here would be stored in plain text and no app would know it."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


admin.site.unregister(TOTPDevice)
admin.site.register(TOTPDevice, SealedTOTPDeviceAdmin)
platform_admin_site.register(SecurityKey, SecurityKeyAdmin)


class AuditEventFilter(admin.SimpleListFilter):
    """What happened: a model created, changed or deleted, or one of the events of org.audit."""

    title = pgettext_lazy("audit log", "action")
    parameter_name = "event"
    _changes = {
        name: (action, ACTION_LABELS[action])
        for name, action in (
            ("create", LogEntry.Action.CREATE),
            ("update", LogEntry.Action.UPDATE),
            ("delete", LogEntry.Action.DELETE),
        )
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [(key, label) for key, (_action, label) in self._changes.items()] + list(
            audit.EVENTS.items()
        )

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value in self._changes:
            no_event = Q(additional_data__isnull=True) | ~Q(additional_data__has_key="event")
            return queryset.filter(no_event, action=self._changes[value][0])
        if value in audit.EVENTS:
            return queryset.filter(additional_data__event=value)
        return queryset


class AuditObjectTypeFilter(admin.SimpleListFilter):
    """The kind of object an entry is about (the types the log holds)."""

    title = _("object type")
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        ids = AuditEntry.objects.values_list("content_type_id", flat=True).distinct()
        types = [ContentType.objects.get_for_id(pk) for pk in ids.order_by()]
        return sorted(((str(t.pk), str(t.name)) for t in types), key=lambda item: item[1])

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value is None:
            return queryset
        if not value.isdigit():
            raise IncorrectLookupParameters(value)
        return queryset.filter(content_type_id=int(value))


class AuditActorFilter(admin.RelatedOnlyFieldListFilter):
    """The people who appear in the log."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = _("who")


class AuditDateFilter(admin.DateFieldListFilter):
    """Today, the past 7 days, this month, this year."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = pgettext_lazy("audit log", "when")


class AuditEntryAdmin(admin.ModelAdmin):
    """The tenant's audit log (:mod:`org.audit`): every change of the registered models with its
    before and after, and the sign-ins, transfers, closes, blocks and exports; who, when and
    from which address. Filters (action, person, object type, date), search, and a CSV export
    of what is shown (itself recorded). Append-only: nobody adds, changes or deletes an entry
    here, superusers included (403)."""

    date_hierarchy = "timestamp"
    list_display = ("when", "who", "what", "object_type", "target", "address")
    list_filter = (
        AuditEventFilter,
        ("actor", AuditActorFilter),
        AuditObjectTypeFilter,
        ("timestamp", AuditDateFilter),
    )
    search_fields = (
        "object_repr",
        "actor__username",
        "actor_email",
        "remote_addr",
        "changes",
        "additional_data",
    )
    list_select_related = ("actor", "content_type")
    fields = (
        "when",
        "who",
        "address",
        "what",
        "object_type",
        "object_id_text",
        "target",
        "changes_table",
        "details",
    )
    readonly_fields = fields
    change_list_template = "admin/org/auditentry/change_list.html"
    actions = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=pgettext_lazy("audit log", "when"), ordering="timestamp")
    def when(self, obj: AuditEntry) -> Any:
        return timezone.localtime(obj.timestamp)

    @admin.display(description=_("address"))
    def address(self, obj: AuditEntry) -> str:
        return obj.remote_addr or "-"

    @admin.display(description=_("object"))
    def target(self, obj: AuditEntry) -> str:
        return obj.object_repr

    @admin.display(description=_("object ID"))
    def object_id_text(self, obj: AuditEntry) -> str:
        return obj.object_pk or "-"

    @admin.display(description=_("who"), ordering="actor__username")
    def who(self, obj: AuditEntry) -> str:
        if obj.actor is not None:
            return obj.actor.username
        return obj.actor_email or str(_("(nobody signed in)"))

    @admin.display(description=pgettext_lazy("audit log", "action"))
    def what(self, obj: AuditEntry) -> str:
        return obj.label

    @admin.display(description=_("object type"))
    def object_type(self, obj: AuditEntry) -> str:
        return str(obj.content_type.name)

    @admin.display(description=_("before and after"))
    def changes_table(self, obj: AuditEntry) -> str:
        changes = obj.changes_dict or {}
        if not changes:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (get_field_verbose_name(obj, field), *_before_after(value))
                for field, value in sorted(changes.items())
            ),
        )
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            _("field"),
            _("before"),
            _("after"),
            rows,
        )

    @admin.display(description=_("details"))
    def details(self, obj: AuditEntry) -> str:
        data = {k: v for k, v in (obj.additional_data or {}).items() if k != "event"}
        return json.dumps(data, ensure_ascii=False, sort_keys=True) if data else "-"

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        export = path(
            "export/",
            self.admin_site.admin_view(self.export_view),
            name="{}_{}_export".format(*info),
        )
        return [export, *super().get_urls()]

    def export_view(self, request: HttpRequest) -> Any:
        """``GET …/export/?<the list's filters and search>`` → the entries shown, as a UTF-8 CSV
        (newest first, as they were when asked), streamed; the export itself is recorded in the
        log. 403 without the view permission; 400 ``{"error": "invalid"}`` for filters the list
        refuses."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
            queryset = changelist.get_queryset(request)
        except IncorrectLookupParameters:
            return JsonResponse(
                {"error": "invalid", "detail": str(_("These filters are not valid."))}, status=400
            )
        # the entries as they are now: not the record of this export, written next
        last = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        queryset = queryset.filter(pk__lte=last)
        filters = {key: request.GET.getlist(key) for key in request.GET}
        audit.audit_record(
            actor=request.user,
            action=audit.EXPORT,
            target=AuditEntry,
            data={"report": "audit_log", "filters": filters},
        )
        response = StreamingHttpResponse(
            _csv_lines(queryset.select_related("actor", "content_type")),
            content_type="text/csv; charset=utf-8",
        )
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="audit-log-{stamp}.csv"'
        return response


def _before_after(value: Any) -> tuple[str, str]:
    """A change as django-auditlog stores it: ``[before, after]`` (or, for many-to-many
    fields, ``{"type": "m2m", "operation", "objects"}``) → two texts."""
    if isinstance(value, list | tuple) and len(value) == 2:
        return tuple("" if v is None else str(v) for v in value)  # type: ignore[return-value]
    if isinstance(value, dict) and value.get("type") == "m2m":
        objects = ", ".join(str(o) for o in value.get("objects", []))
        if value.get("operation") == "delete":
            return objects, ""
        return "", objects
    return "", json.dumps(value, ensure_ascii=False, default=str)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(queryset: QuerySet) -> Iterator[str]:
    """The audit CSV: a byte-order mark (Excel reads Chinese then), a header, one row per
    entry; times in the site's time zone (ISO 8601), changes and details as JSON."""
    writer = csv.writer(_Echo())
    yield "\ufeff"
    yield writer.writerow(
        [
            "time",
            "actor",
            "actor_email",
            "ip",
            "action",
            "event",
            "object_type",
            "object_id",
            "object",
            "changes",
            "details",
        ]
    )
    for entry in queryset.iterator(chunk_size=2000):
        data = dict(entry.additional_data or {})
        event = data.pop("event", "")
        yield writer.writerow(
            [
                timezone.localtime(entry.timestamp).isoformat(),
                entry.actor.username if entry.actor is not None else "",
                entry.actor_email or "",
                entry.remote_addr or "",
                entry.get_action_display(),
                event,
                f"{entry.content_type.app_label}.{entry.content_type.model}",
                entry.object_pk,
                entry.object_repr,
                json.dumps(entry.changes_dict or {}, ensure_ascii=False, default=str),
                json.dumps(data, ensure_ascii=False, default=str) if data else "",
            ]
        )


# django-auditlog's own page is replaced by the one above, under Organisation; the platform
# admin reads the public schema's log (its own sign-ins and changes) the same way
if admin.site.is_registered(LogEntry):
    admin.site.unregister(LogEntry)
admin.site.register(AuditEntry, AuditEntryAdmin)
platform_admin_site.register(AuditEntry, AuditEntryAdmin)


# single sign-on (Organisation → Single sign-on) and LDAP / Active Directory sync (Organisation →
# LDAP directory), each in its own module
from org import admin_ldap, admin_sso  # noqa: E402, F401
