"""Security keys and passkeys (WebAuthn, org.securitykeys) as a second factor, with real
signatures: each test makes a P-256 key pair and builds what an authenticator sends (attestation
"none", authenticator data, an ECDSA signature) itself; py_webauthn checks it unmocked. Also the
secrets of two-factor sign-in at rest (encrypted TOTP keys, hashed recovery codes)."""

from __future__ import annotations

import hashlib
import importlib
import io
import itertools
import json
import os
import re
import struct
from base64 import urlsafe_b64decode, urlsafe_b64encode
from dataclasses import dataclass, field

import cbor2
import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_tenants.utils import schema_context
from redis import Redis

from org import twofactor
from org.models import AuditEntry, SealedTOTPDevice, SecurityKey, SecuritySettings, User
from tests.conftest import PASSWORD, agent_client, make_agent, unique
from tests.waits import fresh_window
from weiyu import fields

_addresses = itertools.count(10)

PATHS = [
    pytest.param("acme", "acme.localhost", "/inbox/login/", "/inbox/", id="inbox"),
    pytest.param("acme", "acme.localhost", "/admin/login/", "/admin/", id="tenant-admin"),
    pytest.param("public", "localhost", "/admin/login/", "/admin/", id="platform-admin"),
]


def _b64(data: bytes) -> str:
    return urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Authenticator:
    """A security key in software: one P-256 credential and its signature counter."""

    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    counter: int = 0

    def _cose_key(self) -> bytes:
        numbers = self.private.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,  # kty: EC2
                3: -7,  # alg: ES256
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
        ).encode()

    def register(self, options: dict, origin: str, rp_id: str | None = None) -> str:
        """The browser's answer to ``navigator.credentials.create(options)`` as JSON text."""
        rp_hash = hashlib.sha256((rp_id or options["rp"]["id"]).encode()).digest()
        attested = (
            bytes(16)  # aaguid
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self._cose_key()
        )
        # flags: user present (0x01), user verified (0x04), attested credential data (0x40)
        auth_data = rp_hash + bytes([0x45]) + struct.pack(">I", self.counter) + attested
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        return json.dumps(
            {
                "id": _b64(self.credential_id),
                "rawId": _b64(self.credential_id),
                "type": "public-key",
                "clientExtensionResults": {},
                "response": {
                    "clientDataJSON": _b64(client_data),
                    "attestationObject": _b64(attestation),
                    "transports": ["usb"],
                },
            }
        )

    def sign(
        self, options: dict, origin: str, *, counter_step: int = 1, verified: bool = True
    ) -> str:
        """The browser's answer to ``navigator.credentials.get(options)`` as JSON text; the
        counter moves by ``counter_step`` first; ``verified``: the user verification flag."""
        self.counter += counter_step
        rp_hash = hashlib.sha256(options["rpId"].encode()).digest()
        flags = 0x05 if verified else 0x01  # user present, (user verified)
        auth_data = rp_hash + bytes([flags]) + struct.pack(">I", self.counter)
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = self.private.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return json.dumps(
            {
                "id": _b64(self.credential_id),
                "rawId": _b64(self.credential_id),
                "type": "public-key",
                "clientExtensionResults": {},
                "response": {
                    "clientDataJSON": _b64(client_data),
                    "authenticatorData": _b64(auth_data),
                    "signature": _b64(signature),
                    "userHandle": None,
                },
            }
        )


def _client(host: str = "acme.localhost") -> Client:
    n = next(_addresses)
    address = f"198.20.{n // 250}.{n % 250 + 1}"
    return Client(HTTP_HOST=host, REMOTE_ADDR=address, HTTP_ACCEPT_LANGUAGE="en")


def _user(schema: str, *, admin: bool) -> User:
    with schema_context(schema):
        if not admin:
            return make_agent()
        return User.objects.create_user(
            username=unique("boss"),
            password=PASSWORD,
            is_staff=True,
            is_superuser=True,
            role="admin",
        )


def _signed_in(schema: str, host: str, user: User) -> Client:
    client = _client(host)
    with schema_context(schema):
        client.force_login(user)
    return client


def _add_key(
    client: Client, key: Authenticator, name: str = "YubiKey", host: str = "acme.localhost"
):
    """Register ``key`` from the security page as the signed-in user; the add answer."""
    options = client.post("/account/security/keys/options/")
    assert options.status_code == 200, options.content
    public = options.json()["publicKey"]
    return client.post(
        "/account/security/keys/",
        {"name": name, "credential": key.register(public, f"http://{host}")},
    )


def _password_step(client: Client, path: str, user: User) -> str:
    step = client.post(path, {"username": user.username, "password": PASSWORD})
    assert step.status_code == 302
    assert step["Location"] == f"{path}code/"
    return step["Location"]


def _key_options(client: Client, code_url: str) -> dict:
    options = client.post(code_url, {"action": "key-options"})
    assert options.status_code == 200, options.content
    return options.json()["publicKey"]


@pytest.fixture
def rule(acme):
    def set_rule(value: str) -> None:
        with schema_context("acme"):
            row = SecuritySettings.current()
            row.two_factor_required = value
            twofactor.settings_save(row)

    yield set_rule
    set_rule(SecuritySettings.TwoFactorRequired.NOBODY)


# --- registering -----------------------------------------------------------------------------


def test_a_first_key_is_registered_with_its_name_and_gives_recovery_codes(acme):
    # given an agent without two factors, on their security page
    user = _user("acme", admin=False)
    client = agent_client(user)
    page = client.get("/account/security/").content.decode()
    assert "No security key yet." in page
    assert 'id="key-add-form"' in page
    # when they register a key named "Desk key"
    key = Authenticator()
    added = _add_key(client, key, "Desk key")
    # then it is kept, ten recovery codes are shown once, and two factors are on
    assert added.status_code == 201
    body = added.json()
    assert body["name"] == "Desk key"
    assert len(set(body["recovery_codes"])) == 10
    with schema_context("acme"):
        stored = SecurityKey.objects.get(user=user)
        assert stored.rp_id == "acme.localhost"
        assert stored.credential_id == _b64(key.credential_id)
        assert stored.transports == ["usb"]
        assert twofactor.has_device(user)
        assert AuditEntry.objects.filter(
            object_pk=str(user.pk), additional_data__event="security_key_added"
        ).exists()
    page = client.get("/account/security/").content.decode()
    assert "Desk key" in page
    assert "never used" in page
    assert "10 recovery codes left." in page
    assert body["recovery_codes"][0] not in page
    # when they add a second key, then no new codes are made
    second = _add_key(client, Authenticator(), "Phone")
    assert second.status_code == 201
    assert second.json()["recovery_codes"] == []


def test_registration_refuses_a_used_challenge_another_origin_and_a_key_twice(acme):
    user = _user("acme", admin=False)
    client = agent_client(user)
    key = Authenticator()
    options = client.post("/account/security/keys/options/").json()["publicKey"]
    assert options["rp"]["id"] == "acme.localhost"
    # an answer made for another site is refused
    evil = client.post(
        "/account/security/keys/",
        {"name": "k", "credential": key.register(options, "http://evil.localhost")},
    )
    assert evil.status_code == 400
    assert evil.json()["error"] == "invalid"
    # the challenge was used up by that attempt: the right answer to it is refused too
    again = client.post(
        "/account/security/keys/",
        {"name": "k", "credential": key.register(options, "http://acme.localhost")},
    )
    assert again.status_code == 400
    assert again.json()["error"] == "expired"
    # a key signed for another relying party is refused
    options = client.post("/account/security/keys/options/").json()["publicKey"]
    other_rp = client.post(
        "/account/security/keys/",
        {
            "name": "k",
            "credential": key.register(options, "http://acme.localhost", rp_id="globex.localhost"),
        },
    )
    assert other_rp.status_code == 400
    # no name, garbage, oversized
    for posted in (
        {"name": " ", "credential": "{}"},
        {"name": "k", "credential": "not json"},
        {"name": "k", "credential": "x" * 70_000},
    ):
        client.post("/account/security/keys/options/")
        assert client.post("/account/security/keys/", posted).status_code == 400
    # registered once; the same key again → 409
    assert _add_key(client, key).status_code == 201
    assert _add_key(client, key).status_code == 409
    with schema_context("acme"):
        assert SecurityKey.objects.filter(user=user).count() == 1


def test_the_key_pages_need_a_signed_in_user(acme):
    client = _client()
    assert client.post("/account/security/keys/options/").status_code == 302
    assert client.post("/account/security/keys/", {"name": "k"}).status_code == 302


# --- signing in ------------------------------------------------------------------------------


@pytest.mark.parametrize(("schema", "host", "path", "home"), PATHS)
def test_a_user_signs_in_with_the_password_then_the_security_key(acme, schema, host, path, home):
    # given an administrator with a security key
    user = _user(schema, admin=True)
    key = Authenticator()
    assert _add_key(_signed_in(schema, host, user), key, host=host).status_code == 201
    client = _client(host)
    # when they give the right password
    code_url = _password_step(client, path, user)
    # then the code step offers the key
    form = client.get(code_url).content.decode()
    assert 'id="use-key"' in form
    assert "account/login_code.js" in form
    assert client.get(home).status_code == 302
    # when the key signs the challenge
    options = _key_options(client, code_url)
    assert options["rpId"] == host
    assert [c["id"] for c in options["allowCredentials"]] == [_b64(key.credential_id)]
    done = client.post(code_url, {"credential": key.sign(options, f"http://{host}")})
    # then they are signed in and sent where they were going
    assert done.status_code == 200
    assert done.json() == {"redirect": home}
    assert client.get(home).status_code == 200
    with schema_context(schema):
        stored = SecurityKey.objects.get(user=user)
    assert stored.sign_count == 1
    assert stored.last_used_at is not None


def _failed_sign_in(client: Client, code_url: str, credential: str) -> None:
    refused = client.post(code_url, {"credential": credential})
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid"
    assert "_auth_user_id" not in client.session


def test_sign_in_refuses_replays_other_origins_cloned_and_foreign_keys(acme):
    user = _user("acme", admin=False)
    key = Authenticator()
    assert _add_key(agent_client(user), key).status_code == 201
    stranger = Authenticator()
    client = _client()
    code_url = _password_step(client, "/inbox/login/", user)
    origin = "http://acme.localhost"

    # another origin (a phishing site relaying the challenge)
    _failed_sign_in(client, code_url, key.sign(_key_options(client, code_url), "http://acme.evil"))
    # a key the user never registered
    _failed_sign_in(client, code_url, stranger.sign(_key_options(client, code_url), origin))
    # a bad signature
    options = _key_options(client, code_url)
    forged = json.loads(key.sign(options, origin))
    forged["response"]["signature"] = _b64(b"\x30\x06\x02\x01\x01\x02\x01\x01")
    _failed_sign_in(client, code_url, json.dumps(forged))
    # a valid answer, then the same answer again (its challenge is used up)
    options = _key_options(client, code_url)
    good = key.sign(options, origin)
    client.post(code_url, {"credential": good})
    assert "_auth_user_id" in client.session
    replay = _client()
    replay_url = _password_step(replay, "/inbox/login/", user)
    _key_options(replay, replay_url)
    _failed_sign_in(replay, replay_url, good)
    # a counter that did not go up (a cloned key)
    _failed_sign_in(
        replay, replay_url, key.sign(_key_options(replay, replay_url), origin, counter_step=0)
    )
    # an answer with no challenge asked for
    _failed_sign_in(
        replay, replay_url, key.sign({"rpId": "acme.localhost", "challenge": "x"}, origin)
    )


def test_wrong_key_answers_count_as_failed_sign_ins_and_lock_out(acme):
    user = _user("acme", admin=False)
    assert _add_key(agent_client(user), Authenticator()).status_code == 201
    client = _client()
    code_url = _password_step(client, "/inbox/login/", user)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _failed_sign_in(client, code_url, "{}")
    locked = client.post(code_url, {"credential": "{}"}, headers={"Accept": "application/json"})
    assert locked.status_code == 429
    assert locked.json()["error"] == "locked_out"


def test_a_key_counts_for_the_rule_and_the_code_step_still_takes_recovery_codes(acme, rule):
    # given everyone must use two factors, and an agent whose only factor is a key
    user = _user("acme", admin=False)
    codes = _add_key(agent_client(user), Authenticator()).json()["recovery_codes"]
    rule(SecuritySettings.TwoFactorRequired.EVERYONE)
    # when they sign in with a recovery code instead of the key
    client = _client()
    code_url = _password_step(client, "/inbox/login/", user)
    form = client.get(code_url).content.decode()
    assert 'name="code"' in form
    done = client.post(code_url, {"code": codes[0].upper()})
    # then they are in and may use the API
    assert done.status_code == 302
    assert client.get("/api/v1/org/directory").status_code == 200


# --- passkey sign-in (no password) ----------------------------------------------------------


@pytest.mark.parametrize(("schema", "host", "path", "home"), PATHS)
def test_a_passkey_signs_in_without_a_password(acme, schema, host, path, home):
    # given a user with a passkey, on the sign-in page
    user = _user(schema, admin=True)
    key = Authenticator()
    assert _add_key(_signed_in(schema, host, user), key, host=host).status_code == 201
    client = _client(host)
    page = client.get(path).content.decode()
    assert 'id="passkey-sign-in"' in page
    assert "account/passkey.js" in page
    # when the authenticator answers the challenge, verifying its user
    options = client.post("/account/passkey/options/").json()["publicKey"]
    assert options["userVerification"] == "required"
    assert options.get("allowCredentials", []) == []
    done = client.post(
        "/account/passkey/", {"credential": key.sign(options, f"http://{host}"), "next": home}
    )
    # then the user is signed in, both factors given, and sent on
    assert done.status_code == 200, done.content
    assert done.json() == {"redirect": home}
    assert client.get(home).status_code == 200
    assert client.session[twofactor.SESSION_VERIFIED] == "ok"


def test_a_passkey_sign_in_refuses_unverified_unknown_and_replayed_answers(acme):
    user = _user("acme", admin=False)
    key = Authenticator()
    assert _add_key(agent_client(user), key).status_code == 201
    client = _client()
    origin = "http://acme.localhost"

    def options() -> dict:
        return client.post("/account/passkey/options/").json()["publicKey"]

    def refused(credential: str) -> None:
        answer = client.post("/account/passkey/", {"credential": credential})
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid"
        assert "_auth_user_id" not in client.session

    # the authenticator did not verify its user (a touch only): one factor, refused
    refused(key.sign(options(), origin, verified=False))
    # a key nobody registered
    refused(Authenticator().sign(options(), origin))
    # an answer made for another site
    refused(key.sign(options(), "http://acme.evil"))
    # a good answer, whose challenge is then used up
    good = key.sign(options(), origin)
    signed = client.post("/account/passkey/", {"credential": good, "next": "https://evil.example/"})
    # an outside "next" is not followed
    assert signed.json() == {"redirect": "/inbox/"}
    other = _client()
    other.post("/account/passkey/options/")
    answer = other.post("/account/passkey/", {"credential": good})
    assert answer.status_code == 400
    # the refusals that named a key counted as failed sign-ins of its user
    with schema_context("acme"):
        assert (
            AuditEntry.objects.filter(
                object_pk=str(user.pk), additional_data__event="sign_in_failed"
            ).count()
            >= 2
        )


def test_a_key_of_one_tenant_signs_in_nowhere_else(acme, globex):
    # given an agent of acme with a passkey
    user = _user("acme", admin=False)
    key = Authenticator()
    assert _add_key(agent_client(user), key, "Acme desk key").status_code == 201
    # when a page of globex asks for a passkey and the key answers for globex's site
    client = _client("globex.localhost")
    options = client.post("/account/passkey/options/").json()["publicKey"]
    assert options["rpId"] == "globex.localhost"
    answer = client.post(
        "/account/passkey/", {"credential": key.sign(options, "http://globex.localhost")}
    )
    # then globex knows no such key and nobody is signed in
    assert answer.status_code == 400
    assert "_auth_user_id" not in client.session
    # and the platform admin's list of keys is its own (none of acme's)
    platform = _signed_in("public", "localhost", _user("public", admin=True))
    listing = platform.get("/admin/org/securitykey/")
    assert listing.status_code == 200
    assert "Acme desk key" not in listing.content.decode()


@pytest.fixture
def sign_in_counts(acme):
    """Forget acme's sign-in rate-limit counts afterwards: the tenant-wide one is shared with
    the other sign-in tests of this minute."""
    yield
    redis = Redis.from_url(settings.REDIS_URL)
    for key in redis.scan_iter(f"{settings.REDIS_KEY_PREFIX}:rl:signin-*:acme*"):
        redis.delete(key)


def test_passkey_sign_ins_share_the_sign_in_budget_of_an_address(sign_in_counts):
    # given an address limited to 2 sign-in attempts a minute
    client = _client()
    fresh_window(60)
    with override_settings(WEIYU_RATE_LIMITS=True, WEIYU_SIGN_INS_PER_IP_MINUTE=2):
        assert client.post("/account/passkey/options/").status_code == 200
        assert client.post("/account/passkey/", {"credential": "{}"}).status_code == 400
        # then the third is refused with the wait, before any check
        refused = client.post("/account/passkey/options/")
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert int(refused["Retry-After"]) > 0


# --- removing --------------------------------------------------------------------------------


def test_removing_keys(acme, rule):
    user = _user("acme", admin=False)
    client = agent_client(user)
    assert _add_key(client, Authenticator(), "One").status_code == 201
    assert _add_key(client, Authenticator(), "Two").status_code == 201
    with schema_context("acme"):
        one, two = SecurityKey.objects.filter(user=user).order_by("pk")
    # another user cannot remove them
    other = agent_client(_user("acme", admin=False))
    assert other.post(f"/account/security/keys/{one.pk}/delete/").status_code == 404
    # the user removes one
    gone = client.post(f"/account/security/keys/{one.pk}/delete/", follow=True)
    assert "The security key is removed." in gone.content.decode()
    assert "One" not in re.sub(r"<[^>]+>", " ", gone.content.decode()).split("Sessions")[0]
    # the last one stays while the rule requires two factors
    rule(SecuritySettings.TwoFactorRequired.EVERYONE)
    assert client.post(f"/account/security/keys/{two.pk}/delete/").status_code == 409
    rule(SecuritySettings.TwoFactorRequired.NOBODY)
    # without the rule it goes, with the recovery codes
    assert client.post(f"/account/security/keys/{two.pk}/delete/").status_code == 302
    with schema_context("acme"):
        assert not twofactor.has_device(user)
        assert not StaticDevice.objects.filter(user=user).exists()
        assert (
            AuditEntry.objects.filter(
                object_pk=str(user.pk), additional_data__event="security_key_removed"
            ).count()
            == 2
        )


# --- secrets at rest -------------------------------------------------------------------------


def _raw(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def test_the_database_holds_no_plain_totp_key_nor_recovery_code(acme):
    # given an agent who turned on the authenticator app
    user = _user("acme", admin=False)
    client = agent_client(user)
    client.get("/account/security/")
    with schema_context("acme"):
        device = SealedTOTPDevice.objects.get(user=user)
        secret = device.bin_key
    code = f"{TOTP(secret).token():06d}"
    done = client.post("/account/security/", {"code": code})
    codes = re.findall(r"<li><code>([a-z0-9]+)</code></li>", done.content.decode())
    assert len(codes) == 10
    # then the device's key column is empty, the key table holds a Fernet token, and no
    # recovery code is stored as itself
    with schema_context("acme"):
        (plain_key,) = _raw("SELECT key FROM otp_totp_totpdevice WHERE id = %s", [device.pk])[0]
        (sealed,) = _raw("SELECT key FROM org_totpsecret WHERE device_id = %s", [device.pk])[0]
        tokens = [
            t
            for (t,) in _raw(
                "SELECT t.token FROM otp_static_statictoken t JOIN otp_static_staticdevice d "
                "ON d.id = t.device_id WHERE d.user_id = %s",
                [user.pk],
            )
        ]
    assert plain_key == ""
    assert sealed.startswith("gA")
    assert secret.hex() not in sealed
    assert len(tokens) == 10
    assert not set(tokens) & set(codes)
    # and signing in still works with the app's code and with a recovery code
    for answer in (f"{TOTP(secret, drift=1).token():06d}", codes[3]):
        fresh = _client()
        code_url = _password_step(fresh, "/inbox/login/", user)
        assert fresh.post(code_url, {"code": answer}).status_code == 302


def test_the_data_migration_seals_existing_keys_and_hashes_existing_codes(acme):
    # given an authenticator and recovery codes stored the old way (plain)
    user = _user("acme", admin=False)
    migration = importlib.import_module(
        "org.migrations.0014_seal_totp_keys_and_hash_recovery_codes"
    )
    with schema_context("acme"):
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
        plain_key = device.key
        static = StaticDevice.objects.create(user=user, name="recovery", confirmed=True)
        StaticToken.objects.create(device=static, token="abcd2345")
        # when the migration runs
        migration.seal(apps, None)
        # then the key moved to the encrypted table and the code is a digest
        sealed = SealedTOTPDevice.objects.get(pk=device.pk)
        assert sealed.key == ""
        assert sealed.bin_key.hex() == plain_key
        assert StaticToken.objects.get(device=static).token == twofactor.recovery_digest("abcd2345")
    # and the user signs in with the old app's code and the old recovery code
    code = f"{TOTP(bytes.fromhex(plain_key)).token():06d}"
    for answer in (code, "ABCD-2345"):
        client = _client()
        code_url = _password_step(client, "/inbox/login/", user)
        assert client.post(code_url, {"code": answer}).status_code == 302


def test_an_admin_removes_a_lost_key_in_the_back_office(acme):
    # given an agent with a security key, and an administrator
    user = _user("acme", admin=False)
    assert _add_key(agent_client(user), Authenticator(), "Lost key").status_code == 201
    with schema_context("acme"):
        key = SecurityKey.objects.get(user=user)
    boss_user = _user("acme", admin=True)
    boss = agent_client(boss_user)
    # then the back office lists it, cannot add or edit keys, nor add an authenticator app
    listing = boss.get("/admin/org/securitykey/").content.decode()
    assert "Lost key" in listing
    assert boss.get("/admin/org/securitykey/add/").status_code == 403
    assert boss.get("/admin/otp_totp/totpdevice/add/").status_code == 403
    # when the administrator deletes it
    deleted = boss.post(f"/admin/org/securitykey/{key.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    # then the agent signs in with the password alone, and the log says who removed it
    signed = _client().post("/inbox/login/", {"username": user.username, "password": PASSWORD})
    assert signed["Location"] == "/inbox/"
    with schema_context("acme"):
        assert not SecurityKey.objects.filter(pk=key.pk).exists()
        entry = AuditEntry.objects.get(
            object_pk=str(user.pk), additional_data__event="security_key_removed"
        )
    assert entry.actor_id == boss_user.pk


def test_rotating_field_keys_covers_platform_admins_authenticator_keys(acme):
    # given a platform admin with an authenticator app (its key in the public schema)
    user = _user("public", admin=True)
    client = _signed_in("public", "localhost", user)
    client.get("/account/security/")
    with schema_context("public"):
        device = SealedTOTPDevice.objects.get(user=user)
        secret = device.bin_key
        (before,) = _raw("SELECT key FROM org_totpsecret WHERE device_id = %s", [device.pk])[0]
    enrolled = client.post("/account/security/", {"code": f"{TOTP(secret).token():06d}"})
    assert enrolled.status_code == 200
    new_key = Fernet.generate_key().decode()
    home = fields.derived_key(settings.SECRET_KEY).decode()
    try:
        # when the keys are rotated to a new first key
        with override_settings(WEIYU_FIELD_KEYS=[new_key]):
            out = io.StringIO()
            call_command("rotate_field_keys", "--schema", "public", stdout=out)
            assert "public:" in out.getvalue()
            with schema_context("public"):
                (after,) = _raw("SELECT key FROM org_totpsecret WHERE device_id = %s", [device.pk])[
                    0
                ]
            # then the key opens with the new key alone, and the admin still signs in
            assert after != before
            assert Fernet(new_key.encode()).decrypt(after.encode()).decode() == secret.hex()
            fresh = _client("localhost")
            code_url = _password_step(fresh, "/admin/login/", user)
            answer = f"{TOTP(secret, drift=1).token():06d}"
            assert fresh.post(code_url, {"code": answer}).status_code == 302
    finally:
        with override_settings(WEIYU_FIELD_KEYS=[home, new_key]):
            call_command("rotate_field_keys", "--schema", "public", stdout=io.StringIO())


def test_a_platform_admin_with_two_sessions_sees_and_ends_the_other(acme):
    # given a platform admin signed in on two browsers
    user = _user("public", admin=True)
    here = _client("localhost")
    there = _client("localhost")
    for client in (here, there):
        assert _password_step_free(client, user)
    # when they open the security page, then both sessions are listed with End for the other
    page = here.get("/account/security/")
    assert page.status_code == 200
    ended = re.findall(r'action="/account/security/sessions/(\d+)/end/"', page.content.decode())
    assert len(ended) == 1
    # and ending it signs the other browser out
    assert here.post(f"/account/security/sessions/{ended[0]}/end/").status_code == 302
    assert there.get("/admin/").status_code == 302


def _password_step_free(client: Client, user: User) -> bool:
    """Sign in on the platform admin with the password (no second factor)."""
    signed = client.post("/admin/login/", {"username": user.username, "password": PASSWORD})
    return signed.status_code == 302 and signed["Location"] == "/admin/"
