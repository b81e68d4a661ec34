from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TicketsConfig(AppConfig):
    name = "tickets"
    verbose_name = _("Tickets")

    def ready(self) -> None:
        from kefu.signals import demo_tenant_ready
        from tickets import demo

        demo_tenant_ready.connect(demo.populate, dispatch_uid="tickets-demo")
