"""Secrets at rest (docs/security.md, "Secrets at rest"): what a database dump shows of a vendor
API key, key rotation, and the deploy check."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django_tenants.utils import schema_context

from kbase.models import LlmProvider
from org.models import User
from tenants.checks import field_keys_in_production
from tests.conftest import agent_client, unique
from weiyu import fields


@pytest.fixture(autouse=True)
def _no_providers_left(acme):
    """The tenant is shared by the suite: no provider (and no undecryptable row) outlives a test
    (raw SQL: the ORM would decrypt the rows it deletes)."""
    yield
    with schema_context("acme"), connection.cursor() as cursor:
        cursor.execute("DELETE FROM kbase_llmprovider WHERE name LIKE 'Vendor%%'")


def _stored(provider: LlmProvider) -> str:
    """The api_key column as a database dump would show it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM kbase_llmprovider WHERE id = %s", [provider.pk])
        return cursor.fetchone()[0]


def test_a_vendor_api_key_is_not_in_the_table_in_plain_text(acme):
    with schema_context("acme"):
        provider = LlmProvider.objects.create(
            name="Vendor", api_key="sk-very-secret-1234", is_active=False
        )
        raw = _stored(provider)
        assert "sk-very-secret" not in raw
        assert raw.startswith(fields.TOKEN_PREFIX)
        assert LlmProvider.objects.get(pk=provider.pk).api_key == "sk-very-secret-1234"


def test_rotation_rewrites_every_secret_under_the_new_first_key(acme):
    with schema_context("acme"):
        provider = LlmProvider.objects.create(
            name="Vendor", api_key="sk-rotate-me", is_active=False
        )
        before = _stored(provider)
    new_key = Fernet.generate_key().decode()
    try:
        _rotate_to_new_key(provider, before, new_key)
    finally:
        # every secret of the shared tenant back under the suite's own key
        home = fields.derived_key(settings.SECRET_KEY).decode()
        with override_settings(WEIYU_FIELD_KEYS=[home, new_key]):
            call_command("rotate_field_keys", "--schema", "acme", stdout=io.StringIO())


def _rotate_to_new_key(provider: LlmProvider, before: str, new_key: str) -> None:
    with override_settings(WEIYU_FIELD_KEYS=[new_key]):
        # the value written under the old key still opens
        with schema_context("acme"):
            assert LlmProvider.objects.get(pk=provider.pk).api_key == "sk-rotate-me"
        call_command("rotate_field_keys", "--schema", "acme", stdout=io.StringIO())
        with schema_context("acme"):
            after = _stored(provider)
            assert after != before
            # the new key alone opens it now
            assert Fernet(new_key.encode()).decrypt(after.encode()) == b"sk-rotate-me"
            assert LlmProvider.objects.get(pk=provider.pk).api_key == "sk-rotate-me"


def test_a_secret_written_under_a_lost_key_is_a_clear_error(acme):
    stranger = Fernet(Fernet.generate_key()).encrypt(b"sk-elsewhere").decode()
    with schema_context("acme"):
        provider = LlmProvider.objects.create(name="Vendor", api_key="x", is_active=False)
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE kbase_llmprovider SET api_key = %s WHERE id = %s", [stranger, provider.pk]
            )
        with pytest.raises(fields.FieldKeyError, match="WEIYU_FIELD_KEYS"):
            LlmProvider.objects.get(pk=provider.pk)


def test_the_back_office_never_shows_the_key_and_keeps_it_when_left_empty(acme):
    with schema_context("acme"):
        boss = User.objects.create_user(
            username=unique("boss"), password="x", role="admin", is_staff=True, is_superuser=True
        )
        provider = LlmProvider.objects.create(
            name="Vendor",
            base_url="https://1.1.1.1/v1",
            model="m",
            api_key="sk-shown-never",
            is_active=False,
        )
    client = agent_client(boss)
    url = f"/admin/kbase/llmprovider/{provider.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    assert "sk-shown-never" not in page.content.decode()
    # saving the form with the key left empty keeps the stored key
    saved = client.post(
        url,
        {
            "name": "Vendor renamed",
            "preset": LlmProvider.Preset.CUSTOM,
            "base_url": "https://1.1.1.1/v1",
            "model": "m",
            "api_key": "",
            "timeout_s": 30,
            "temperature": 0.2,
            "priority": 10,
        },
    )
    assert saved.status_code == 302, saved.content.decode()[:2000]
    with schema_context("acme"):
        kept = LlmProvider.objects.get(pk=provider.pk)
    assert (kept.name, kept.api_key) == ("Vendor renamed", "sk-shown-never")


def test_deploy_check_requires_field_keys_in_production():
    with override_settings(PRODUCTION=True, WEIYU_FIELD_KEYS=[]):
        assert [e.id for e in field_keys_in_production()] == ["tenants.E002"]
    with override_settings(PRODUCTION=True, WEIYU_FIELD_KEYS=[Fernet.generate_key().decode()]):
        assert field_keys_in_production() == []
