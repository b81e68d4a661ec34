"""Passwords (docs/security.md, "Passwords"): "forgot your password?" by e-mail, and the
tenant's password policy."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client, override_settings
from django_tenants.utils import schema_context

from org.models import SecuritySettings, User
from tests.conftest import PASSWORD, unique
from tests.waits import fresh_window, wait_until


def _tenant_client() -> Client:
    return Client(HTTP_HOST="acme.localhost", HTTP_ACCEPT_LANGUAGE="en")


def _person(email: str, **extra) -> User:
    with schema_context("acme"):
        return User.objects.create_user(
            username=unique("pat"), password=PASSWORD, email=email, role="agent", **extra
        )


@pytest.fixture
def default_policy(acme):
    """The shared tenant's policy back at its defaults after the test."""
    yield
    with schema_context("acme"):
        SecuritySettings.objects.update(password_min_length=8, password_character_classes=1)


def test_forgot_password_mails_a_one_time_link_that_sets_a_new_password(acme, smtp, mail_worker):
    _port, inbox = smtp
    email = f"{unique('pat')}@acme.example"
    person = _person(email)
    web = _tenant_client()
    # the sign-in page offers it
    assert 'href="/account/password/reset/"' in web.get("/inbox/login/").content.decode()

    # when they ask for a link with their address (in another case)
    asked = web.post("/account/password/reset/", {"email": email.upper()})
    assert asked.status_code == 302
    page = web.get(asked["Location"]).content.decode()
    assert "If an account uses this address" in page

    # then a mail with a one-time link reaches them
    wait_until(lambda: inbox.messages, what="the reset mail")
    recipients, mail = inbox.messages[0]
    assert recipients == [email]
    assert mail["Subject"] == "Reset your Weiyu password"
    body = mail.get_content()
    assert person.username in body
    link = re.search(r"http://acme\.localhost(/account/password/reset/\S+/)", body).group(1)

    # the new password must follow the policy
    form_url = web.get(link)["Location"]
    short = web.post(form_url, {"new_password1": "x1", "new_password2": "x1"})
    assert short.status_code == 200
    assert "This password is too short" in short.content.decode()

    new_password = "tangerine-kite-5581"
    done = web.post(form_url, {"new_password1": new_password, "new_password2": new_password})
    assert done["Location"] == "/account/password/reset/done/"
    assert "Your password has been set" in web.get(done["Location"]).content.decode()

    # they sign in with the new password, not the old one
    fresh = _tenant_client()
    assert fresh.post("/inbox/login/", {"username": person.username, "password": PASSWORD})[
        "Content-Type"
    ].startswith("text/html")
    assert not fresh.session.get("_auth_user_id")
    signed_in = fresh.post("/inbox/login/", {"username": person.username, "password": new_password})
    assert signed_in.status_code == 302
    # and the link works once
    again = _tenant_client().get(link, follow=True).content.decode()
    assert "This link has expired or has been used already" in again


def test_the_answer_never_says_whether_an_account_exists(acme, smtp, mail_worker):
    _port, inbox = smtp
    known = f"{unique('kim')}@acme.example"
    _person(known)
    gone = f"{unique('gone')}@acme.example"
    _person(gone, is_active=False)
    web = _tenant_client()
    answers = [
        web.post("/account/password/reset/", {"email": address})
        for address in (f"{unique('nobody')}@acme.example", gone, known)
    ]
    assert {(a.status_code, a["Location"]) for a in answers} == {
        (302, "/account/password/reset/?sent=1")
    }
    # only the active account's owner gets a mail
    wait_until(lambda: inbox.messages, what="the reset mail")
    assert [recipients for recipients, _mail in inbox.messages] == [[known]]


def test_a_malformed_address_is_a_clear_error(acme):
    answer = _tenant_client().post("/account/password/reset/", {"email": "not an address"})
    assert answer.status_code == 400
    assert "Enter the e-mail address of your account." in answer.content.decode()


def test_reset_requests_are_rate_limited_per_address(acme):
    email = f"{unique('flood')}@acme.example"
    web = _tenant_client()
    fresh_window(3600, need_s=60)
    with override_settings(WEIYU_RATE_LIMITS=True):
        answers = [
            web.post("/account/password/reset/", {"email": email}).status_code for _ in range(5)
        ]
        refused = web.post("/account/password/reset/", {"email": email})
    assert answers[:3] == [302, 302, 302]
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert "Too many password reset requests" in refused.content.decode()


def test_a_successful_reset_lifts_the_sign_in_lock(acme, smtp, mail_worker):
    _port, inbox = smtp
    email = f"{unique('lock')}@acme.example"
    person = _person(email)
    web = _tenant_client()
    # given an account locked by wrong passwords
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        web.post("/inbox/login/", {"username": person.username, "password": "wrong"})
    locked = web.post("/inbox/login/", {"username": person.username, "password": PASSWORD})
    assert locked.status_code == 429
    assert 'href="/account/password/reset/"' in locked.content.decode()
    # when they reset the password
    web.post("/account/password/reset/", {"email": email})
    wait_until(lambda: inbox.messages, what="the reset mail")
    body = inbox.messages[0][1].get_content()
    link = re.search(r"http://acme\.localhost(/account/password/reset/\S+/)", body).group(1)
    form_url = web.get(link)["Location"]
    new_password = "walnut-harbour-9034"
    web.post(form_url, {"new_password1": new_password, "new_password2": new_password})
    # then the new password signs in at once
    signed_in = _tenant_client().post(
        "/inbox/login/", {"username": person.username, "password": new_password}
    )
    assert signed_in.status_code == 302


def test_the_tenant_password_policy_applies_where_passwords_are_set(acme, globex, default_policy):
    with schema_context("acme"):
        row = SecuritySettings.current()
        row.password_min_length = 12
        row.password_character_classes = 3
        row.save()
        with pytest.raises(ValidationError) as short:
            validate_password("Abc-12")
        assert "at least 12 characters" in " ".join(short.value.messages)
        with pytest.raises(ValidationError) as simple:
            validate_password("lowercaseonlywords")
        assert "must mix at least 3 of" in " ".join(simple.value.messages)
        validate_password("Orchard-Lantern-2041")
        # Chinese characters count as "other characters"
        validate_password("我的密码是Lantern2041")
    # another tenant keeps its own (default) policy
    with schema_context("globex"):
        validate_password("plainwords")
