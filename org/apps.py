from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OrgConfig(AppConfig):
    name = "org"
    verbose_name = _("Organisation")

    def ready(self) -> None:
        from org import audit, sessions

        audit.register_models()
        audit.connect_signals()
        sessions.connect_signals()
