from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class KbaseConfig(AppConfig):
    name = "kbase"
    verbose_name = _("Knowledge base")
