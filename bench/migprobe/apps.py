from django.apps import AppConfig


class MigprobeConfig(AppConfig):
    name = "migprobe"
    default_auto_field = "django.db.models.BigAutoField"
