from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TicketsConfig(AppConfig):
    name = "tickets"
    verbose_name = _("Tickets")

    def ready(self) -> None:
        from tenants.signals import demo_tenant_ready
        from tickets import demo
        from tickets.services import tickets as ticket_services

        demo_tenant_ready.connect(demo.populate, dispatch_uid="tickets-demo")

        from im.attachments import attachment_keeper_register
        from tickets.models import Comment

        attachment_keeper_register(
            name="tickets.comment",
            ids=lambda: Comment.attachments.through.objects.values("attachment_id"),
        )

        from kefu import privacy
        from tickets.privacy import visitor_tickets_erase, visitor_tickets_export

        privacy.register("tickets", visitor_tickets_export, visitor_tickets_erase)

        from org.signals import user_deactivated

        def release(sender: object, user: object, deleted: bool, **kwargs: object) -> None:
            if deleted:
                ticket_services.tickets_release_user(user=user)  # type: ignore[arg-type]

        user_deactivated.connect(release, weak=False, dispatch_uid="tickets-user-release")

        # the audit log (org.audit): SLA policies and categories, before and after
        from org.audit import track
        from tickets.models import Category, SlaPolicy, SlaTarget

        track(SlaPolicy, m2m=("workgroups",))
        track(SlaTarget)
        track(Category)
