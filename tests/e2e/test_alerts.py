"""The Alerts page in Chromium: reached from the inbox's top bar; "Enable notifications" with the
permission granted registers the inbox's service worker (served with the scope ``/inbox/``) and
asks the browser to subscribe — headless Chromium has no push service to subscribe with, so the
page must then say so and keep nothing (the push itself is tested against a push service of the
test's own in tests/org/test_alerts_push.py); the preferences form saves."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from org.models import AlertPreferences, PushSubscription
from tests.conftest import make_agent
from tests.e2e.test_live_chat import TIMEOUT, _sign_in

pytestmark = pytest.mark.e2e


def test_the_alerts_page_enables_notifications_and_saves_the_choices(
    daphne_server, browser, django_db_blocker
):
    with django_db_blocker.unblock(), schema_context("acme"):
        agent = make_agent(inbox=False, name="ivy")
    origin = daphne_server.url("acme.localhost", "").rstrip("/")
    context = browser.new_context(locale="en-US")
    context.grant_permissions(["notifications"], origin=origin)
    try:
        page = context.new_page()
        _sign_in(page, f"{origin}/inbox/login/", agent.username)
        page.click("#alerts-link")
        page.wait_for_url("**/inbox/alerts/", timeout=TIMEOUT)

        page.click("#push-enable")
        page.wait_for_function(
            "['on', 'error'].includes(document.getElementById('push-status').dataset.state)",
            timeout=TIMEOUT,
        )
        scope = page.evaluate(
            "navigator.serviceWorker.getRegistration('/inbox/').then(r => r && r.scope)"
        )
        assert scope == f"{origin}/inbox/"
        state = page.get_attribute("#push-status", "data-state")
        endpoint = page.evaluate(
            "navigator.serviceWorker.getRegistration('/inbox/')"
            ".then(r => r.pushManager.getSubscription()).then(s => s && s.endpoint)"
        )
        with django_db_blocker.unblock(), schema_context("acme"):
            kept = list(
                PushSubscription.objects.filter(user=agent).values_list("endpoint", flat=True)
            )
        if state == "on":  # a browser that reaches its push service
            assert kept == [endpoint]
            assert page.is_visible("#push-disable")
        else:
            # headless Chromium has no push service ("Registration failed - permission
            # denied"): the page says what the browser answered, nothing is kept, and the
            # button stays to try again
            assert page.text_content("#push-status").strip()
            assert kept == []
            assert endpoint is None
            assert page.is_visible("#push-enable")

        page.uncheck("input[name=push][value=mention]")
        page.fill("#digest-minutes", "45")
        page.click("#alerts-form button[type=submit]")
        page.wait_for_selector("#alerts-saved", timeout=TIMEOUT)
        with django_db_blocker.unblock(), schema_context("acme"):
            prefs = AlertPreferences.objects.get(user=agent)
        assert (prefs.push_mention, prefs.push_sla, prefs.digest_after_minutes) == (False, True, 45)
    finally:
        context.close()
