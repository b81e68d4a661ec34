"""Websocket URLs (docs/protocol.md §2).

Only the agents' endpoint reads the session cookie: a visitor authenticates with the token in its
URL, so looking up a session for it would cost every widget socket a database call for nothing
(docs/benchmarks.md, "Connections")."""

from django.urls import path

from kefu.consumers import AgentConsumer, VisitorConsumer
from weiyu.asgi_tenancy import SessionUserMiddleware

websocket_urlpatterns = [
    path("ws/agent/", SessionUserMiddleware(AgentConsumer.as_asgi())),
    path("ws/visitor/", VisitorConsumer.as_asgi()),
]
