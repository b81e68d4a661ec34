from typing import Any

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class KefuConfig(AppConfig):
    name = "kefu"
    verbose_name = _("Customer service")

    def ready(self) -> None:
        # Django imports app modules that touch models only once the registry is ready, here.
        from im.hooks import send_hook_register
        from im.models import Conversation
        from kefu import syslines  # registers the service's automatic lines  # noqa: F401
        from kefu.services.messages import VisitorConversationHook
        from kefu.services.transfers import agent_release
        from org.signals import user_deactivated

        send_hook_register(kind=Conversation.Kind.VISITOR, hook=VisitorConversationHook())
        # the messaging API's answers carry a customer conversation's session (docs/api.md §2)
        from im.hooks import payload_part_register
        from kefu.selectors import sessions_add

        payload_part_register(kind=Conversation.Kind.VISITOR, add=sessions_add)

        # work for the service timers' scan marks the tenant live (tenants/fanout.py): the beat
        # then visits it every interval, the idle tenants once a sweep
        from django.db.models.signals import post_save

        from kefu.models import ScheduledMessage, Session, Transfer
        from tenants import fanout

        live = {
            "robot",
            "queued",
            "open",
            "pending",
        }  # of sessions, transfers and scheduled messages

        def timers_work(sender: type, instance: object, created: bool, **kwargs: Any) -> None:
            fields = kwargs.get("update_fields")
            field = "state" if sender is ScheduledMessage else "status"
            if getattr(instance, field) in live and (created or fields is None or field in fields):
                fanout.live_mark("timers")

        for model in (Session, Transfer, ScheduledMessage):
            post_save.connect(
                timers_work, sender=model, weak=False, dispatch_uid=f"kefu-timers-{model.__name__}"
            )

        # the plan's widget channels (tenants.quotas): the active ones
        from kefu.models import Channel
        from tenants import quotas

        quotas.meter_register(
            "widget_channels", lambda: Channel.objects.filter(is_active=True).count()
        )

        # a messaging channel's customer id in the privacy export and erasure (kefu.privacy)
        from kefu import privacy
        from kefu.channels.inbound import visitor_channel_erase, visitor_channel_export

        privacy.register("channels", visitor_channel_export, visitor_channel_erase)

        from kefu.services.scheduled import visitor_scheduled_erase, visitor_scheduled_export

        # replies scheduled to an erased visitor are withdrawn and their text blanked
        privacy.register("scheduled_messages", visitor_scheduled_export, visitor_scheduled_erase)

        def release(sender: object, user: object, deleted: bool, **kwargs: object) -> None:
            agent_release(user=user, deleted=deleted)  # type: ignore[arg-type]

        # knowledge bases restricted to workgroups: hidden from everyone else (kbase.access)
        from kefu import supervision

        supervision.register()

        user_deactivated.connect(release, weak=False, dispatch_uid="kefu-agent-release")

        # no web push or e-mail digest to someone with an inbox tab open (org.alerts)
        from kefu import presence
        from org.alerts import presence_register

        presence_register(presence.inbox_open)

        # the audit log (org.audit): changes of the service's configuration, before and after
        from kefu import models as kefu_models
        from org.audit import track

        track(kefu_models.Workgroup, m2m=("agents", "knowledge_bases"))
        track(kefu_models.CannedResponse, m2m=("workgroups",))
        track(kefu_models.Channel, m2m=("knowledge_bases", "departments"))
        for model in (
            kefu_models.Skill,
            kefu_models.RoutingRule,
            kefu_models.VisitorTag,
            kefu_models.SensitiveWord,
            kefu_models.BlockedVisitor,
            kefu_models.AutoReply,
        ):
            track(model)
