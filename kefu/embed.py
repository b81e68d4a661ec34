"""The widget's embed snippet (KF-1): the one line a customer pastes into their website.

Its ``src`` must be an absolute URL that reaches this tenant from any other site, so it is
built from ``WEIYU_PUBLIC_URL`` when set (the address the public uses, in front of any proxy),
else from the request the back office was opened with (scheme, host and port as the browser
sent them).
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse


def public_base_url(*, request: HttpRequest, domain: str | None) -> str:
    """``scheme://host[:port]`` (no trailing slash) at which the public reaches this tenant.

    ``settings.WEIYU_PUBLIC_URL`` (env ``WEIYU_PUBLIC_URL``) wins when set; a ``{domain}`` in it
    is replaced by the tenant's primary ``domain`` (e.g. ``https://{domain}`` or
    ``http://{domain}:8000``), so one setting serves every tenant. Otherwise the request's own
    scheme and ``Host`` header (port included) are used.
    """
    configured = getattr(settings, "WEIYU_PUBLIC_URL", "")
    if configured:
        base = configured.replace("{domain}", domain or request.get_host().split(":")[0])
        return base.rstrip("/")
    return f"{request.scheme}://{request.get_host()}"


def snippet(*, base_url: str, channel_key: str) -> str:
    """The ``<script>`` element to paste: ``<script src="<base>/widget.js" data-channel="…"
    async></script>`` (plain text; escape it before putting it in HTML)."""
    return (
        f'<script src="{base_url}{reverse("kefu:widget-js")}" '
        f'data-channel="{channel_key}" async></script>'
    )


def preview_url(*, base_url: str, channel_key: str) -> str:
    """The tenant's demo page carrying this channel's widget (``/?channel=<key>``)."""
    return f"{base_url}{reverse('kefu:demo-site')}?{urlencode({'channel': channel_key})}"
