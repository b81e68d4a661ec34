from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ImConfig(AppConfig):
    name = "im"
    verbose_name = _("Messaging")

    def ready(self) -> None:
        from org.signals import user_deactivated

        def leave_groups(sender: object, user: object, deleted: bool, **kwargs: object) -> None:
            if deleted:
                from im.services.groups import groups_leave_deleted

                groups_leave_deleted(user=user)  # type: ignore[arg-type]

        user_deactivated.connect(leave_groups, weak=False, dispatch_uid="im-leave-groups")

        # the audit log (org.audit): the tenant's messaging settings and stickers
        from im.models import MessagingSettings, Sticker
        from org.audit import track

        track(MessagingSettings)
        track(Sticker)

        # the plan's storage (tenants.quotas): bytes of the files uploaded, thumbnails aside
        from django.db.models import Sum

        from im.models import Attachment
        from tenants import quotas

        quotas.meter_register(
            "storage_bytes",
            lambda: Attachment.objects.aggregate(total=Sum("size"))["total"] or 0,
        )
