"""Tenant back office for people and the organisation: users (admins, agents, staff) and the
department tree with its members and heads."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.translation import gettext_lazy as _
from treebeard.admin import TreeAdmin
from treebeard.forms import movenodeform_factory

from org.models import Department, DepartmentMember, User


class UserDepartmentInline(admin.TabularInline):
    model = DepartmentMember
    extra = 0
    fields = ("department", "is_head", "is_primary")
    autocomplete_fields = ("department",)
    verbose_name = _("department")
    verbose_name_plural = _("departments")


@admin.register(User)
class UserAdmin(BaseUserAdmin):
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
    list_filter = ("role", "is_active", "is_staff", "is_superuser", "departments__department")
    search_fields = ("username", "display_name", "first_name", "last_name", "email", "title")
    fieldsets = (
        *BaseUserAdmin.fieldsets,
        (_("Weiyu"), {"fields": ("role", "display_name", "title", "phone")}),
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
