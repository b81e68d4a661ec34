"""ASGI entry point: HTTP through Django, websockets through the tenant-aware stack."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "weiyu.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from kbase import embeddings  # noqa: E402
from weiyu.asgi_tenancy import (  # noqa: E402
    SameOriginMiddleware,
    SessionUserMiddleware,
    TenantWebsocketMiddleware,
)
from weiyu.routing import websocket_urlpatterns  # noqa: E402

# load the sentence model now rather than in the middle of the first search that needs it
embeddings.warm_in_background()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SameOriginMiddleware(
            TenantWebsocketMiddleware(SessionUserMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)
