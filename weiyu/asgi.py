"""ASGI entry point: HTTP through Django, websockets through the tenant-aware stack, both behind
:class:`weiyu.clientaddr.TrustedProxyMiddleware` (the client's address).

A web process never loads the sentence model (torch): query vectors come from the embedding
service (kbase.embed_service); tests/kbase/test_embed_service.py checks the imports.

Two interpreter settings for the event loop (docs/benchmarks.md, "Connections" and "Team chat"):

- the GIL switch interval is ``WEIYU_GIL_SWITCH_MS`` (default 1 ms, Python's is 5 ms). The loop
  gives up the GIL at every socket write and Redis call; a database thread busy in Python kept it
  up to the whole interval each time, so in a reconnect storm a fifth of the loop's time went to
  waiting for it;
- ``gc.freeze()`` once the application is built (``WEIYU_GC_FREEZE=0`` leaves it out): the
  modules, settings, URL patterns and translations loaded at start-up are moved out of the
  collector's reach, so its full collections walk only what the sockets made.

And daphne's sockets are written to at once rather than on the reactor's next turn
(:mod:`weiyu.fastwrites`; ``WEIYU_FAST_WRITES=0`` leaves Twisted's own writes), and autobahn
formats its per-frame debug log arguments only when debug logging is on.
"""

import gc
import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "weiyu.settings")
sys.setswitchinterval(float(os.environ.get("WEIYU_GIL_SWITCH_MS", "1")) / 1000)
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from org.signin_gate import SignInGate  # noqa: E402
from weiyu import fastwrites  # noqa: E402
from weiyu.asgi_tenancy import SameOriginMiddleware, TenantWebsocketMiddleware  # noqa: E402
from weiyu.clientaddr import TrustedProxyMiddleware  # noqa: E402
from weiyu.routing import websocket_urlpatterns  # noqa: E402

# the client's address (and scheme) behind trusted proxies, for both protocols (docs/security.md)
application = TrustedProxyMiddleware(
    ProtocolTypeRouter(
        {
            # sign-in POSTs past their budget are refused here, the rest run on the sign-in
            # threads (org.signin_gate, docs/security.md "Sign-in throttling")
            "http": SignInGate(django_asgi_app),
            "websocket": SameOriginMiddleware(
                TenantWebsocketMiddleware(URLRouter(websocket_urlpatterns))
            ),
        }
    )
)
if os.environ.get("WEIYU_FAST_WRITES", "1") != "0":
    fastwrites.install()
    fastwrites.lazy_autobahn_log_args()
if os.environ.get("WEIYU_GC_FREEZE", "1") != "0":
    gc.collect()
    gc.freeze()
