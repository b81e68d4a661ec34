"""Weiyu project package: settings, URL maps, ASGI app, Celery app, realtime publishing."""

from weiyu.celery import app as celery_app

__all__ = ("celery_app",)
