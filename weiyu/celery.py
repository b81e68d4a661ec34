"""The Celery application. Tasks take a tenant ``schema`` argument and enter it explicitly."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "weiyu.settings")

app = Celery("weiyu")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
