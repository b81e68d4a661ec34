"""ASGI entry point: HTTP through Django, websockets through the tenant-aware stack, both behind
:class:`weiyu.clientaddr.TrustedProxyMiddleware` (the client's address).

A web process never loads the sentence model (torch): query vectors come from the embedding
service (kbase.embed_service); tests/kbase/test_embed_service.py checks the imports."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "weiyu.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from weiyu.asgi_tenancy import SameOriginMiddleware, TenantWebsocketMiddleware  # noqa: E402
from weiyu.clientaddr import TrustedProxyMiddleware  # noqa: E402
from weiyu.routing import websocket_urlpatterns  # noqa: E402

# the client's address (and scheme) behind trusted proxies, for both protocols (docs/security.md)
application = TrustedProxyMiddleware(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": SameOriginMiddleware(
                TenantWebsocketMiddleware(URLRouter(websocket_urlpatterns))
            ),
        }
    )
)
