"""Tenant back office for customer service: agents, workgroups, widget channels, visitors and
sessions. State changes that routing cares about go through ``kefu.services``."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from kbase.models import KnowledgeBase
from kefu import embed, exports, inbox_views, privacy, stats, supervision
from kefu.channels import mail
from kefu.channels.api import api_channel_credentials_rotate
from kefu.channels.delivery import channel_health
from kefu.models import (
    AgentState,
    AttributeDefinition,
    AutoReply,
    BlockedVisitor,
    CannedResponse,
    Channel,
    ChannelAccount,
    DailyStat,
    ExportJob,
    Label,
    LabelRule,
    RetentionPolicy,
    RoutingRule,
    SavedView,
    ScheduledMessage,
    SensitiveWord,
    Session,
    Skill,
    Transfer,
    Visitor,
    VisitorNote,
    VisitorPageView,
    VisitorTag,
    Workgroup,
)
from kefu.senders import agent_sender
from kefu.services import agents as kefu_agents
from kefu.services import contacts
from kefu.services import routing as kefu_routing
from kefu.services import sessions as kefu_sessions
from kefu.services import visitors as visitor_services
from kefu.services.visitors import VISITOR_EDITABLE
from org.admin import UserAdmin
from org.middleware import reads_only
from org.models import User
from tenants import quotas
from weiyu import outbound, reports
from weiyu.errors import ServiceError


class AgentStateInline(admin.StackedInline):
    model = AgentState
    can_delete = False
    fields = ("status", "connected", "max_concurrent", "open_count")
    readonly_fields = ("connected", "open_count")


class AgentUserAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, AgentStateInline]


admin.site.unregister(User)
admin.site.register(User, AgentUserAdmin)


class WorkgroupForm(forms.ModelForm):
    """The workgroup with its supervisors: people granted ``kefu.supervise_workgroup`` on it
    (django-guardian, :mod:`kefu.supervision`), saved by the admin through the service."""

    supervisors = forms.ModelMultipleChoiceField(
        label=_("supervisors"),
        queryset=User.objects.none(),
        required=False,
        widget=admin.widgets.FilteredSelectMultiple(_("supervisors"), is_stacked=False),
        help_text=_(
            "They see this workgroup's conversations, tickets, statistics and live monitor "
            "(besides the lead). Supervisors and agents can be chosen."
        ),
    )

    class Meta:
        model = Workgroup
        fields = "__all__"  # noqa: DJ007 - the admin's fieldsets choose

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["supervisors"].queryset = User.objects.filter(
            is_active=True,
            deleted_at__isnull=True,
            role__in=[User.Role.SUPERVISOR, User.Role.AGENT],
        ).order_by("username")
        if self.instance.pk:
            self.initial["supervisors"] = supervision.workgroup_supervisors(self.instance)


@admin.register(Workgroup)
class WorkgroupAdmin(admin.ModelAdmin):
    form = WorkgroupForm
    list_display = ("name", "strategy", "lead", "department", "agent_count", "queued")
    list_filter = ("strategy", "department")
    filter_horizontal = ("agents", "knowledge_bases")
    actions = ["dispatch_queue"]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "agents",
                    "lead",
                    "department",
                    "strategy",
                    "allow_pick",
                    "calendar",
                )
            },
        ),
        (_("Supervision and restrictions"), {"fields": ("supervisors", "knowledge_bases")}),
        (
            _("Queue limits"),
            {
                "fields": (
                    "max_queue_length",
                    "max_wait_s",
                    "overflow_action",
                    "overflow_workgroup",
                )
            },
        ),
        (
            _("Automation"),
            {
                "fields": (
                    "requeue_on_leave",
                    "remind_after_s",
                    "reassign_after_s",
                    "idle_close_after_min",
                    "idle_close_message",
                )
            },
        ),
    )

    @admin.display(description=_("agents"))
    def agent_count(self, obj: Workgroup) -> int:
        return obj.agents.count()

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if "supervisors" in form.cleaned_data:
            try:
                supervision.workgroup_supervisors_set(
                    workgroup=form.instance, users=form.cleaned_data["supervisors"]
                )
            except ServiceError as exc:
                messages.error(request, exc.message)

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        """Deleted users are not offered as agents or lead."""
        if db_field.name in ("agents", "lead"):
            kwargs["queryset"] = User.objects.filter(deleted_at__isnull=True)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description=_("waiting"))
    def queued(self, obj: Workgroup) -> int:
        return obj.sessions.filter(status=Session.Status.QUEUED).count()

    @admin.action(description=_("Assign waiting visitors now"))
    def dispatch_queue(self, request: HttpRequest, queryset: Any) -> None:
        total = sum(kefu_routing.workgroup_dispatch(workgroup_id=wg.pk) for wg in queryset)
        self.message_user(
            request, _("%(count)d waiting visitors assigned.") % {"count": total}, messages.SUCCESS
        )


class RoutingRuleInline(admin.TabularInline):
    model = RoutingRule
    extra = 0
    fields = ("priority", "attribute", "attribute_key", "operator", "value", "workgroup", "skill")


@admin.register(Skill)
class SkillAdmin(admin.ModelAdmin):
    list_display = ("name",)
    search_fields = ("name",)


@admin.register(VisitorTag)
class VisitorTagAdmin(admin.ModelAdmin):
    list_display = ("name",)
    search_fields = ("name",)


#: the account's secrets: never written back into the page; left empty, the stored one is kept
ACCOUNT_SECRETS = ("secret", "verify_token", "aes_key", "imap_password", "smtp_password")
#: an e-mail channel's settings (kefu.channels.mail)
EMAIL_FIELDS = (
    "email_address",
    "email_name",
    "imap_host",
    "imap_port",
    "imap_tls",
    "imap_user",
    "imap_password",
    "imap_folder",
    "smtp_host",
    "smtp_port",
    "smtp_tls",
    "smtp_user",
    "smtp_password",
)


#: e-mail settings with a default, optional in the form
MAIL_DEFAULTED = ("imap_port", "imap_tls", "imap_folder", "smtp_port", "smtp_tls")


class ChannelAccountForm(forms.ModelForm):
    """A messaging channel's vendor account. Secrets are never shown (an empty field keeps the
    stored one); an API base URL the outbound guard would refuse (weiyu.outbound) is refused
    with the reason."""

    api_base_url = forms.URLField(
        label=_("API base URL"),
        required=False,
        assume_scheme="https",
        help_text=_(
            "Empty: the vendor's public API. API channel: the callback URL that receives the "
            "replies."
        ),
    )

    class Meta:
        model = ChannelAccount
        fields = ("app_id", "secret", "verify_token", "aes_key", "api_base_url", *EMAIL_FIELDS)
        widgets = {name: forms.PasswordInput(render_value=False) for name in ACCOUNT_SECRETS}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # a Telegram or WeChat account leaves the e-mail part alone: its defaults stay
        for name in MAIL_DEFAULTED:
            self.fields[name].required = False
        for name in ACCOUNT_SECRETS:
            if self.instance.pk and getattr(self.instance, name):
                self.fields[name].help_text = format_html(
                    "{}<br>{}",
                    self.fields[name].help_text,
                    _("A value is stored (encrypted). Leave empty to keep it."),
                )

    def _clean_secret(self, name: str) -> str:
        typed = self.cleaned_data.get(name) or ""
        if not typed and self.instance.pk:
            return getattr(self.instance, name)
        return typed

    def clean_secret(self) -> str:
        return self._clean_secret("secret")

    def clean_verify_token(self) -> str:
        return self._clean_secret("verify_token")

    def clean_imap_password(self) -> str:
        return self._clean_secret("imap_password")

    def clean_smtp_password(self) -> str:
        return self._clean_secret("smtp_password")

    def clean(self) -> dict[str, Any]:
        """An e-mail channel's address must be free: mail is routed by it. An e-mail setting
        left empty keeps its default (ports 993 and 465, TLS, ``INBOX``)."""
        data = super().clean()
        for name in MAIL_DEFAULTED:
            if data.get(name) in (None, ""):
                data[name] = ChannelAccount._meta.get_field(name).get_default()
        address = (data.get("email_address") or "").lower()
        if address:
            taken = ChannelAccount.objects.filter(email_address__iexact=address)
            if self.instance.pk:
                taken = taken.exclude(pk=self.instance.pk)
            if taken.exists():
                self.add_error("email_address", _("Another channel receives this address."))
        return data

    def clean_aes_key(self) -> str:
        value = self._clean_secret("aes_key")
        if value and len(value) != 43:  # WeChat's EncodingAESKey length
            raise forms.ValidationError(_("The EncodingAESKey has 43 characters."))
        return value

    def clean_api_base_url(self) -> str:
        url = self.cleaned_data.get("api_base_url") or ""
        if url:
            try:
                outbound.check_url(url)
            except outbound.OutboundRefusedError as exc:
                raise forms.ValidationError(str(exc)) from exc
        return url


class ChannelAccountInline(admin.StackedInline):
    """The vendor account of a Telegram or WeChat channel (docs/channels.md)."""

    model = ChannelAccount
    form = ChannelAccountForm
    extra = 0
    max_num = 1
    can_delete = False
    fieldsets = (
        (
            _("Telegram, WeChat, API"),
            {"fields": ("app_id", "secret", "verify_token", "aes_key", "api_base_url")},
        ),
        (_("E-mail"), {"fields": EMAIL_FIELDS}),
    )
    verbose_name = _("messaging account (Telegram, WeChat, API, e-mail)")


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "kind",
        "mode",
        "workgroup",
        "is_active",
        "last_inbound",
        "failed_today",
    )
    list_filter = ("is_active", "kind", "mode")
    list_select_related = ("workgroup", "account")
    readonly_fields = (
        "public_key",
        "snippet",
        "callback_url",
        "health",
        "created_at",
        "identity_secret_state",
    )
    filter_horizontal = ("knowledge_bases", "departments")
    inlines = [ChannelAccountInline, RoutingRuleInline]
    actions = ("identity_secret_generate", "api_credentials_generate", "email_connection_test")

    @admin.action(
        description=_("Generate a new key and signing secret of an API channel (shows them once)")
    )
    def api_credentials_generate(self, request: HttpRequest, queryset: Any) -> Any:
        """The inbound key and the callback signing secret of one API channel, shown once on a
        page that is not cached (docs/channels.md, "API channel")."""
        channels = list(queryset[:2])
        if len(channels) != 1 or channels[0].kind != Channel.Kind.API:
            self.message_user(request, _("Choose one API channel."), messages.WARNING)
            return None
        key, secret = api_channel_credentials_rotate(channel=channels[0])
        response = TemplateResponse(
            request,
            "admin/kefu/channel/api_credentials.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "channel": channels[0],
                "key": key,
                "secret": secret,
                "title": channels[0].name,
            },
        )
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description=_("Test the e-mail connection (IMAP and SMTP log-in)"))
    def email_connection_test(self, request: HttpRequest, queryset: Any) -> None:
        """Log in to each chosen e-mail channel's IMAP and SMTP servers and say how it went
        (nothing is fetched or sent; kefu.channels.mail.connection_test)."""
        for channel in queryset.filter(kind=Channel.Kind.EMAIL).select_related("account")[:10]:
            account = getattr(channel, "account", None)
            if account is None:
                self.message_user(
                    request,
                    _("%(channel)s: no account set.") % {"channel": channel},
                    messages.ERROR,
                )
                continue
            for ok, text in mail.connection_test(account):
                self.message_user(
                    request, f"{channel}: {text}", messages.SUCCESS if ok else messages.ERROR
                )

    @admin.display(description=_("identity verification secret"))
    def identity_secret_state(self, obj: Channel) -> str:
        if obj.pk and obj.identity_secret:
            return _("Set (kept encrypted; generate a new one with the list's action).")
        return _("None yet: generate one with the list's action.")

    @admin.action(description=_("Generate a new identity verification secret (shows it once)"))
    def identity_secret_generate(self, request: HttpRequest, queryset: Any) -> Any:
        channels = list(queryset[:2])
        if len(channels) != 1:
            self.message_user(request, _("Choose one channel."), messages.WARNING)
            return None
        secret = visitor_services.channel_identity_secret_rotate(channel=channels[0])
        response = TemplateResponse(
            request,
            "admin/kefu/channel/identity_secret.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "channel": channels[0],
                "secret": secret,
                "title": channels[0].name,
            },
        )
        response["Cache-Control"] = "no-store"
        return response

    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "kind",
                    "mode",
                    "workgroup",
                    "title",
                    "welcome_text",
                    "color",
                    "csat_enabled",
                    "departments",
                    "is_active",
                    "public_key",
                    "snippet",
                )
            },
        ),
        (
            _("Identity verification (Weiyu.identify)"),
            {"fields": ("identity_required", "identity_secret_state")},
        ),
        (
            _("Messaging channel (Telegram, WeChat Official Account, API, e-mail)"),
            {"fields": ("callback_url", "health")},
        ),
        (
            _("Robot (robot-only and robot-first modes)"),
            {
                "fields": (
                    "robot_name",
                    "robot_greeting",
                    "knowledge_bases",
                    "min_confidence",
                    "handover_after_misses",
                    "handover_phrases",
                )
            },
        ),
    )

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        """The plan's widget channels (tenants.quotas): when they are used up, "Add channel"
        goes back to the list with a message saying so."""
        try:
            quotas.check_total("widget_channels")
        except ServiceError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(reverse("admin:kefu_channel_changelist"))
        return super().add_view(request, form_url, extra_context)

    def formfield_for_manytomany(self, db_field: Any, request: Any, **kwargs: Any) -> Any:
        if db_field.name == "knowledge_bases":
            kwargs["queryset"] = KnowledgeBase.objects.filter(is_public=True)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            domain = connection.tenant.get_primary_domain()
            obj.public_base_url = embed.public_base_url(
                request=request, domain=domain.domain if domain else None
            )
        return obj

    @admin.display(description=_("embed snippet"))
    def snippet(self, obj: Channel) -> str:
        """The snippet to paste (built by :mod:`kefu.embed` from ``WEIYU_PUBLIC_URL`` or this
        request), a copy button and a link to a page carrying it."""
        base = getattr(obj, "public_base_url", None)
        if not obj.pk or base is None:
            return "—"
        return format_html(
            '<div class="weiyu-snippet"><code id="weiyu-snippet">{}</code><br>'
            '<button type="button" class="button" data-copy="weiyu-snippet" '
            'data-done="{}">{}</button> <a href="{}" target="_blank" rel="noopener" '
            'id="weiyu-snippet-preview">{}</a></div>',
            embed.snippet(base_url=base, channel_key=obj.public_key),
            _("Copied"),
            _("Copy"),
            embed.preview_url(base_url=base, channel_key=obj.public_key),
            _("Open a page with this widget"),
        )

    @admin.display(description=_("callback URL"))
    def callback_url(self, obj: Channel) -> str:
        """Where the vendor sends updates: the Telegram webhook, WeChat's server URL, the API
        channel's messages endpoint."""
        base = getattr(obj, "public_base_url", None)
        if not obj.pk or base is None or obj.kind == Channel.Kind.WIDGET:
            return "—"
        if obj.kind == Channel.Kind.API:
            return f"{base}/api/v1/kefu/channels/{obj.public_key}/messages"
        return f"{base}/hooks/{obj.kind}/{obj.public_key}"

    @admin.display(description=_("health"))
    def health(self, obj: Channel) -> str:
        """Last inbound, last error and deliveries failed today (kefu.channels.delivery)."""
        if not obj.pk or obj.kind == Channel.Kind.WIDGET:
            return "—"
        h = channel_health(channel=obj)
        return format_html(
            '<dl class="weiyu-health"><dt>{}</dt><dd id="health-inbound">{}</dd>'
            '<dt>{}</dt><dd id="health-error">{}</dd>'
            '<dt>{}</dt><dd id="health-failed">{}</dd>'
            '<dt>{}</dt><dd id="health-events-failed">{}</dd></dl>',
            _("Last inbound"),
            date_format(timezone.localtime(h["last_inbound_at"]), "DATETIME_FORMAT")
            if h["last_inbound_at"]
            else _("never"),
            _("Last error"),
            "{} ({})".format(
                h["last_error"],
                date_format(timezone.localtime(h["last_error_at"]), "DATETIME_FORMAT"),
            )
            if h["last_error_at"]
            else _("none"),
            _("Messages not delivered today"),
            h["failed_today"],
            _("Inbound messages refused or failed (kept %(days)s days)")
            % {"days": settings.WEIYU_CHANNEL_EVENT_FAILED_KEEP_DAYS},
            h["events_failed"],
        )

    @admin.display(description=_("last inbound"))
    def last_inbound(self, obj: Channel) -> Any:
        account = getattr(obj, "account", None) if obj.kind != Channel.Kind.WIDGET else None
        return account.last_inbound_at if account else None

    @admin.display(description=_("not delivered today"))
    def failed_today(self, obj: Channel) -> Any:
        if obj.kind == Channel.Kind.WIDGET:
            return "—"
        return channel_health(channel=obj)["failed_today"]

    class Media:
        js = ("kefu/snippet_copy.js",)


class VisitorNoteInline(admin.TabularInline):
    model = VisitorNote
    extra = 0
    fields = ("text", "author", "created_at")
    readonly_fields = ("author", "created_at")


class VisitorPageViewInline(admin.TabularInline):
    model = VisitorPageView
    extra = 0
    fields = ("url", "title", "created_at")
    readonly_fields = ("url", "title", "created_at")
    max_num = 0
    can_delete = False


@admin.register(Visitor)
class VisitorAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "external_id",
        "channel",
        "ip_address",
        "language",
        "page_url",
        "created_at",
        "last_seen_at",
    )
    list_filter = ("channel", "language", "tags")
    search_fields = ("name", "ip_address", "page_url", "external_id", "email")
    filter_horizontal = ("tags",)
    inlines = [VisitorNoteInline, VisitorPageViewInline]
    actions = ["export_personal_data", "erase_personal_data", "merge_contacts"]

    @admin.action(description=_("Merge the two selected visitors into one contact"))
    def merge_contacts(self, request: HttpRequest, queryset: Any) -> None:
        """Two visitors who are one customer become one contact (kefu.services.contacts): the
        one with a customer id is kept (else the one seen first); the other's conversations,
        notes, tags and attributes move to it."""
        chosen = list(queryset.order_by("pk"))
        if len(chosen) != 2:
            self.message_user(request, _("Select exactly two visitors to merge."), messages.ERROR)
            return
        kept, other = sorted(chosen, key=lambda v: (not v.external_id, v.created_at, v.pk))
        try:
            contacts.contact_merge(user=request.user, visitor_id=kept.pk, other_id=other.pk)
        except ServiceError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(
            request,
            _("%(other)s was merged into %(kept)s.") % {"other": other.name, "kept": kept.name},
            messages.SUCCESS,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # visitors come from the widget (the channel of a visitor is read only)

    @admin.action(description=_("Export personal data (JSON)"))
    def export_personal_data(self, request: HttpRequest, queryset: Any) -> HttpResponse:
        """Everything held about the selected visitors (kefu.privacy.visitor_export) as one JSON
        download: the document itself for one visitor, a list for several."""
        try:
            documents = [
                privacy.visitor_export(user=request.user, visitor_id=pk)
                for pk in queryset.order_by("pk").values_list("pk", flat=True)
            ]
        except ServiceError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
        body = documents[0] if len(documents) == 1 else documents
        name = f"visitor-{documents[0]['visitor']['id']}" if len(documents) == 1 else "visitors"
        response = HttpResponse(
            json.dumps(body, ensure_ascii=False, indent=2),
            content_type="application/json; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="{name}.json"'
        return response

    @admin.action(description=_("Erase personal data"))
    def erase_personal_data(self, request: HttpRequest, queryset: Any) -> HttpResponse | None:
        """After a confirmation page: erase the selected visitors' personal data
        (kefu.privacy.visitor_erase)."""
        if request.POST.get("confirm") != "yes":
            return TemplateResponse(
                request,
                "admin/kefu/visitor/erase_confirm.html",
                {
                    **self.admin_site.each_context(request),
                    "title": _("Erase personal data"),
                    "visitors": list(queryset.order_by("pk")),
                    "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                    "opts": self.model._meta,
                },
            )
        erased = 0
        for pk in queryset.values_list("pk", flat=True):
            try:
                privacy.visitor_erase(user=request.user, visitor_id=pk)
            except ServiceError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                return None
            erased += 1
        self.message_user(
            request,
            ngettext(
                "The personal data of %(n)d visitor was erased.",
                "The personal data of %(n)d visitors was erased.",
                erased,
            )
            % {"n": erased},
            messages.SUCCESS,
        )
        return None

    def save_model(self, request: HttpRequest, obj: Visitor, form: Any, change: bool) -> None:
        changes = {f: form.cleaned_data[f] for f in form.changed_data if f in VISITOR_EDITABLE}
        visitor_services.visitor_update(user=request.user, visitor_id=obj.pk, changes=changes)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Tags and notes through the visitor services, so the agents serving the visitor get
        ``visitor.updated`` as when they change them in the inbox."""
        if "tags" in form.changed_data:
            visitor_services.visitor_tags_set(
                user=request.user,
                visitor_id=form.instance.pk,
                tag_ids=[tag.pk for tag in form.cleaned_data["tags"]],
            )
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not VisitorNote:
            formset.save(commit=False)  # the page trail is read only: nothing to store
            return
        for note in formset.save(commit=False):
            if note.pk is None:
                visitor_services.note_add(
                    user=request.user, visitor_id=form.instance.pk, text=note.text
                )
            else:
                visitor_services.note_update(user=request.user, note_id=note.pk, text=note.text)
        for note in formset.deleted_objects:
            visitor_services.note_delete(user=request.user, note_id=note.pk)

    readonly_fields = (
        "channel",
        "ip_address",
        "user_agent",
        "language",
        "referrer",
        "page_url",
        "created_at",
        "last_seen_at",
        "erased_at",
        # who a verified Weiyu.identify says the contact is (kefu.services.visitors)
        "external_id",
        "attributes",
        "merged_into",
    )


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
    """How long closed conversations are kept (kefu.privacy). One row; the page shows what the
    policy would anonymise or delete today."""

    list_display = ("__str__", "days", "action")
    readonly_fields = ("due_now",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not RetentionPolicy.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        RetentionPolicy.current()
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("due now"))
    def due_now(self, obj: RetentionPolicy) -> str:
        """What the saved policy would do if it ran now (a dry run)."""
        report = privacy.retention_apply(dry_run=True)
        if not report["days"]:
            return str(_("Nothing: conversations are kept forever."))
        return str(
            _(
                "%(conversations)d conversations (%(messages)d messages, %(files)d files) "
                "closed more than %(days)d days ago."
            )
            % report
        )


@admin.register(AgentState)
class AgentStateAdmin(admin.ModelAdmin):
    list_display = (
        "user",
        "status",
        "connected",
        "open_count",
        "max_concurrent",
        "status_changed_at",
    )
    list_filter = ("status", "connected", "skills")
    list_editable = ("max_concurrent",)
    readonly_fields = ("connected", "open_count", "status_changed_at", "last_assigned_at")
    filter_horizontal = ("skills",)
    actions = ["set_online", "set_away", "set_offline"]

    def _set(self, request: HttpRequest, queryset: Any, status: str) -> None:
        for state in queryset.select_related("user"):
            kefu_agents.agent_status_set(user=state.user, status=status)
        self.message_user(request, _("Status updated."), messages.SUCCESS)

    @admin.action(description=_("Set online"))
    def set_online(self, request: HttpRequest, queryset: Any) -> None:
        self._set(request, queryset, AgentState.Status.ONLINE)

    @admin.action(description=_("Set away"))
    def set_away(self, request: HttpRequest, queryset: Any) -> None:
        self._set(request, queryset, AgentState.Status.AWAY)

    @admin.action(description=_("Set offline"))
    def set_offline(self, request: HttpRequest, queryset: Any) -> None:
        self._set(request, queryset, AgentState.Status.OFFLINE)


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "visitor",
        "workgroup",
        "agent",
        "status",
        "created_at",
        "first_response_at",
        "closed_at",
        "transcript",
    )
    list_filter = ("status", "workgroup", "agent", "labels")
    search_fields = ("visitor__name", "agent__username")
    list_select_related = ("visitor", "workgroup", "agent")
    readonly_fields = [f.name for f in Session._meta.fields]
    actions = ["close_sessions", "export_csv", "export_json"]
    change_list_template = "admin/kefu/session/change_list.html"

    def get_urls(self) -> list[Any]:
        return [
            path(
                "reports/",
                self.admin_site.admin_view(self.reports_view),
                name="kefu_session_reports",
            ),
            *super().get_urls(),
        ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Session]:
        """A supervisor sees the conversations of the workgroups they supervise only
        (``kefu.supervision``); administrators and auditors all of them."""
        qs = super().get_queryset(request)
        scope = supervision.supervised_workgroup_ids(request.user)
        return qs if scope is None else qs.filter(workgroup_id__in=scope)

    def reports_view(self, request: HttpRequest) -> HttpResponse:
        """Customer-service statistics (KF-14) with charts, from the rolled-up figures (with
        the time they were computed); ``?export=csv&part=daily|agents|workgroups|labels`` downloads one
        part. ``start`` / ``end``: local dates (default the last 30 days). A POST (the
        "recompute" button) rolls the days up again first, then shows them. Supervisors only
        (403), who see the workgroups they supervise only."""
        if not supervision.is_supervising(request.user):
            raise PermissionDenied
        if request.method == "POST":
            return self._recompute(request)
        workgroup = request.GET.get("workgroup") or None
        scope = supervision.supervised_workgroup_ids(request.user)
        try:
            start, end = reports.date_range(request.GET)
            workgroup_id = int(workgroup) if workgroup else None
            report = stats.report(
                start=start, end=end, workgroup_id=workgroup_id, workgroup_ids=scope
            )
        except ValueError:
            messages.error(request, reports.range_message())
            (start, end), workgroup_id = reports.default_range(), None
            report = stats.report(start=start, end=end, workgroup_ids=scope)
        part = reports.csv_part(request.GET, ("daily", "agents", "workgroups", "labels"))
        if part is not None:
            stats.export_record(user=request.user, part=part, start=start, end=end)
            return reports.csv_response(
                stats.csv_rows(report, part), f"service-{part}-{start}-{end}.csv"
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Customer-service statistics"),
            "report": report,
            "computed_at": stats.computed_at(start=start, end=end, workgroup_id=workgroup_id),
            "start": start,
            "end": end,
            "workgroup": workgroup_id,
            "workgroups": Workgroup.objects.order_by("name").filter(
                **({} if scope is None else {"pk__in": scope})
            ),
            "parts": ["daily", "agents", "workgroups", "labels"],
            "groups": ["agents", "workgroups"],
        }
        return TemplateResponse(request, "admin/kefu/session/reports.html", context)

    def _recompute(self, request: HttpRequest) -> HttpResponse:
        """Roll up the chosen days again (:func:`kefu.stats.stats_refresh`), then show them."""
        query = {k: request.POST.get(k, "") for k in ("start", "end", "workgroup")}
        try:
            start, end = reports.date_range(request.POST)
            rows = stats.stats_refresh(start=start, end=end)
        except ValueError:
            messages.error(request, reports.range_message())
        else:
            messages.success(request, _("Recomputed (%(count)d rows).") % {"count": rows})
        url = reverse("admin:kefu_session_reports")
        return HttpResponseRedirect(f"{url}?{urlencode(query)}")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description=_("transcript"))
    def transcript(self, obj: Session) -> str:
        url = reverse("admin:im_conversation_change", args=[obj.conversation_id])
        return format_html('<a href="{}">{}</a>', url, _("messages"))

    @admin.action(description=_("Export the selected conversations as CSV"))
    @reads_only
    def export_csv(self, request: HttpRequest, queryset: Any) -> None:
        _export_selected(request, queryset, "csv")

    @admin.action(description=_("Export the selected conversations as JSON"))
    @reads_only
    def export_json(self, request: HttpRequest, queryset: Any) -> None:
        _export_selected(request, queryset, "json")

    @admin.action(description=_("Close selected sessions"), permissions=["change"])
    def close_sessions(self, request: HttpRequest, queryset: Any) -> None:
        sender = agent_sender(request.user)
        for session in queryset.exclude(status=Session.Status.CLOSED):
            kefu_sessions.session_close(session_id=session.pk, closed_by=sender)
        self.message_user(request, _("Sessions closed."), messages.SUCCESS)


@admin.register(CannedResponse)
class CannedResponseAdmin(admin.ModelAdmin):
    """Shared canned responses (no owner) for the whole team; agents' personal ones too."""

    list_display = ("shortcut", "title", "category", "owner", "updated_at")
    list_filter = ("category", ("owner", admin.EmptyFieldListFilter), "workgroups")
    search_fields = ("shortcut", "title", "content")
    filter_horizontal = ("workgroups",)


@admin.register(SensitiveWord)
class SensitiveWordAdmin(admin.ModelAdmin):
    """Words masked or refused in customer conversations (visitors and agents alike)."""

    list_display = ("word", "action", "created_at")
    list_filter = ("action",)
    search_fields = ("word",)


@admin.register(BlockedVisitor)
class BlockedVisitorAdmin(admin.ModelAdmin):
    """Blocked visitors and IP addresses/networks, with their expiry."""

    list_display = ("__str__", "network", "reason", "expires_at", "created_by", "created_at")
    search_fields = ("network", "reason", "visitor__name")
    autocomplete_fields = ("visitor",)
    readonly_fields = ("created_by", "created_at")

    def save_model(
        self, request: HttpRequest, obj: BlockedVisitor, form: Any, change: bool
    ) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(Transfer)
class TransferAdmin(admin.ModelAdmin):
    """Transfers between agents and to workgroups, as a log (they are made in the inbox)."""

    list_display = ("session", "from_agent", "to_agent", "to_workgroup", "status", "created_at")
    list_filter = ("status",)
    list_select_related = ("session__visitor", "from_agent", "to_agent", "to_workgroup")
    readonly_fields = [f.name for f in Transfer._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _export_selected(request: HttpRequest, queryset: Any, fmt: str) -> None:
    try:
        job = exports.export_job_create(
            user=request.user,
            fmt=fmt,
            filters={"conversation_ids": list(queryset.values_list("conversation_id", flat=True))},
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
        return
    url = reverse("admin:kefu_exportjob_changelist")
    messages.success(
        request,
        format_html(
            _("Export #{} started: {} conversations. Follow it and download it under {}."),
            job.pk,
            job.total,
            format_html('<a href="{}">{}</a>', url, _("conversation exports")),
        ),
    )


@admin.register(ExportJob)
class ExportJobAdmin(admin.ModelAdmin):
    """Conversation exports (CSV, JSON) written by a worker, with their progress; each is
    downloaded by whoever asked for it (docs/api.md §16)."""

    list_display = ("id", "format", "state", "progress", "requester", "created_at", "download")
    list_filter = ("state", "format")
    list_select_related = ("requester",)
    readonly_fields = [f.name for f in ExportJob._meta.fields if f.name != "content"]
    exclude = ("content",)

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).defer("content")

    @admin.display(description=_("progress"))
    def progress(self, obj: ExportJob) -> str:
        return f"{exports.export_job_payload(obj)['progress']} % ({obj.done}/{obj.total})"

    @admin.display(description=_("file"))
    def download(self, obj: ExportJob) -> str:
        if obj.state != ExportJob.State.DONE:
            return "—"
        return format_html(
            '<a href="/api/v1/kefu/exports/{}/download">{}</a>', obj.pk, _("Download")
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ScheduledMessage)
class ScheduledMessageAdmin(admin.ModelAdmin):
    """Replies agents scheduled in the inbox, as a log: pending, sent, failed (and why) or
    cancelled. They are written, edited and cancelled in the inbox (docs/inbox.md)."""

    list_display = ("send_at", "author", "conversation", "state", "timezone", "sent_at", "error")
    list_filter = ("state",)
    search_fields = ("content", "author__username")
    list_select_related = ("author", "conversation")
    readonly_fields = [f.name for f in ScheduledMessage._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AutoReply)
class AutoReplyAdmin(admin.ModelAdmin):
    """Keyword auto-replies: answered at once, before the robot and the agents."""

    list_display = ("keyword", "match", "channel", "is_active")
    list_filter = ("is_active", "match", "channel")
    search_fields = ("keyword", "reply")


@admin.register(AttributeDefinition)
class AttributeDefinitionAdmin(admin.ModelAdmin):
    """Custom attributes of contacts and conversations (issue 13): agents see and edit them in
    the inbox's visitor panel, ``Weiyu.identify`` sets contact ones, routing rules, the inbox's
    filters and the API read them (docs/api.md §11)."""

    list_display = ("name", "key", "applies_to", "kind", "position")
    list_filter = ("applies_to", "kind")
    list_editable = ("position",)
    search_fields = ("name", "key")
    fields = ("applies_to", "key", "name", "kind", "options", "description", "position")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # values are stored under the key and checked against the kind: fixed once created
        return ("applies_to", "key", "kind") if obj is not None else ()


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    """Conversation labels (KF-13): agents set them in the inbox, label rules by themselves."""

    list_display = ("name", "color", "description", "conversation_count")
    search_fields = ("name", "description")

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).annotate(n=Count("sessions"))

    @admin.display(description=_("conversations"), ordering="n")
    def conversation_count(self, obj: Label) -> int:
        return obj.n


@admin.register(LabelRule)
class LabelRuleAdmin(admin.ModelAdmin):
    """When a visitor's message contains a keyword (in a channel, or any), add a label."""

    list_display = ("label", "keyword", "channel", "is_active")
    list_filter = ("is_active", "label", "channel")
    search_fields = ("keyword", "label__name")
    list_select_related = ("label", "channel")


class SavedViewForm(forms.ModelForm):
    """Checks the filters as the inbox reads them (kefu.inbox_views.filters_clean)."""

    class Meta:
        model = SavedView
        fields = ("name", "owner", "filters")
        help_texts = {
            "filters": _(
                "Filters as JSON: view (mine, unassigned, open, waiting, closed), workgroup, "
                "label and channel (ids), sort (newest or waiting)."
            )
        }

    def clean_filters(self) -> dict[str, Any]:
        value = self.cleaned_data.get("filters")
        if not isinstance(value, dict):
            raise ValidationError(_("A JSON object is expected."))
        try:
            return inbox_views.filters_clean(value)
        except ServiceError as exc:
            raise ValidationError(exc.message) from exc


@admin.register(SavedView)
class SavedViewAdmin(admin.ModelAdmin):
    """Saved views of the inbox's list; an empty owner shares the view with every agent."""

    list_display = ("name", "owner", "filters")
    list_filter = (("owner", admin.EmptyFieldListFilter),)
    search_fields = ("name",)
    list_select_related = ("owner",)

    form = SavedViewForm


@admin.register(DailyStat)
class DailyStatAdmin(admin.ModelAdmin):
    """The rolled-up figures behind the statistics page (read only; recomputed by the beat or
    ``manage.py kefu_stats``)."""

    list_display = (
        "day",
        "workgroup",
        "agent",
        "conversations",
        "abandoned",
        "transfers",
        "csat_count",
    )
    list_filter = ("workgroup",)
    date_hierarchy = "day"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
