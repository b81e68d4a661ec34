"""Websocket URLs (docs/protocol.md §2)."""

from django.urls import path

from kefu.consumers import AgentConsumer, VisitorConsumer

websocket_urlpatterns = [
    path("ws/agent/", AgentConsumer.as_asgi()),
    path("ws/visitor/", VisitorConsumer.as_asgi()),
]
