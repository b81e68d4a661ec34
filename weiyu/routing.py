"""Websocket URLs (docs/protocol.md §2).

Each consumer authenticates its socket itself once the handshake is accepted: agents by the
session cookie, visitors by the token in the URL (docs/benchmarks.md, "Connections")."""

from django.urls import path

from kefu.consumers import AgentConsumer, VisitorConsumer

websocket_urlpatterns = [
    path("ws/agent/", AgentConsumer.as_asgi()),
    path("ws/visitor/", VisitorConsumer.as_asgi()),
]
