from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class KefuConfig(AppConfig):
    name = "kefu"
    verbose_name = _("Customer service")
