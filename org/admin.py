"""Tenant back office for people and the organisation: users (admins, agents, staff), the
department tree with its members and heads, and business calendars (hours and holidays) that SLA
policies and workgroups' work hours count in."""

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from treebeard.admin import TreeAdmin
from treebeard.forms import movenodeform_factory

from org import apikeys, limits, services, twofactor
from org.models import (
    ApiKey,
    BusinessCalendar,
    BusinessHours,
    Department,
    DepartmentMember,
    Holiday,
    SecuritySettings,
    User,
    VisitorLimits,
)
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


@admin.register(User)
class UserAdmin(DeleteKeepingHistory, BaseUserAdmin):
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
    search_fields = ("username", "display_name", "first_name", "last_name", "email", "title")
    fieldsets = (
        *BaseUserAdmin.fieldsets,
        (
            _("Weiyu"),
            {"fields": ("role", "display_name", "title", "phone", "language", "deleted_at")},
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
    """The tenant's sign-in rules: who must use two-factor sign-in (docs/security.md,
    "Two-factor authentication"). One row."""

    list_display = ("__str__", "two_factor_required")

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
