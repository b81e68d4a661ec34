"""A company's brand in the widget: the launcher and the chat header take its primary colour and
the header shows its logo, uploaded in the back office. Real Chromium."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tenants import branding, services
from tests.conftest import PASSWORD, make_desk, unique
from tests.waits import WAIT_MS

pytestmark = pytest.mark.e2e
TIMEOUT = WAIT_MS


@pytest.fixture(scope="module")
def branded(django_db_setup, django_db_blocker):
    """A tenant with a channel left at the default colour, and a logo and primary colour."""
    with django_db_blocker.unblock():
        schema = unique("brand")
        tenant = services.tenant_create(
            name="Branded",
            schema_name=schema,
            domain=f"{schema}.localhost",
            admin_username="boss",
            admin_password=PASSWORD,
        )
        logo = io.BytesIO()
        Image.new("RGB", (64, 32), "#0b7a3e").save(logo, "PNG")
        size = logo.tell()
        logo.seek(0)
        branding.branding_save(
            tenant=tenant, primary_color="#c2185b", accent_color="#0b7a3e", logo=logo,
            logo_size=size,
        )  # fmt: skip
        return make_desk(tenant, agents=1, status="online")


def test_the_widget_wears_the_companys_colour_and_logo(daphne_server, browser, branded):
    schema = branded.tenant.schema_name
    context = browser.new_context(locale="en-US")
    try:
        site = context.new_page()
        site.goto(
            daphne_server.url(f"{schema}.localhost", f"/?channel={branded.channel.public_key}")
        )
        launcher = site.locator("#weiyu-launcher")
        # the launcher takes the brand colour once the widget is ready
        site.wait_for_function(
            "() => getComputedStyle(document.querySelector('#weiyu-launcher')).backgroundColor"
            " === 'rgb(194, 24, 91)'",
            timeout=TIMEOUT,
        )
        launcher.click(timeout=TIMEOUT)
        widget = site.frame_locator("#weiyu-frame")
        header = widget.locator(".chat-header")
        header.wait_for(timeout=TIMEOUT)
        assert header.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(194, 24, 91)"
        # the header shows the logo, loaded
        logo = widget.locator("#chat-logo")
        logo.wait_for(timeout=TIMEOUT)
        assert logo.evaluate("img => img.complete && img.naturalWidth") == 64
    finally:
        context.close()
