"""Single sign-on with an OpenID Connect provider, per tenant (docs/security.md, "Single
sign-on"). The views are in :mod:`org.sso_views`; the settings are the tenant's
:class:`org.models.SingleSignOn` row.

The flow is the authorization code flow with PKCE (S256), ``state`` and ``nonce``
(Authlib's OAuth 2 / OpenID Connect pieces; the ID token's signature checked with joserfc):

1. :func:`sign_in_start` reads the provider's discovery document, keeps a random ``state``,
   ``nonce`` and PKCE verifier in the session (``SESSION_KEY``, for :data:`FLOW_S` seconds) and
   returns the provider's authorization URL;
2. the provider sends the browser back to ``/account/sso/callback/`` with a ``code``;
   :func:`sign_in_finish` checks the ``state`` (once: it is removed from the session), trades
   the code and the verifier for tokens at the token endpoint (client secret, HTTP Basic or
   in the body as the provider asks), verifies the ID token (signature against the provider's
   JWKS, ``iss``, ``aud``, ``exp``, ``iat``, ``nonce``, ``at_hash`` when present) and finds or
   makes the person.

Every request to the provider goes through :func:`weiyu.outbound.guarded_client`: a provider on
a private or loopback address (a self-hosted Keycloak) must be allowed by the platform operator
in ``WEIYU_OUTBOUND_ALLOW``. The discovery document and the keys are cached for
:data:`CACHE_S` seconds (per tenant and issuer); an ID token signed with a key id not in the
cached set fetches the set again once.

People are matched by the ID token's ``email`` (case-insensitive, accounts not deleted); a
provider that says ``email_verified: false`` is refused. Refusals are written to the audit log
(``sso_refused``) and raised as :class:`weiyu.errors.ServiceError`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx2
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from django.core.cache import cache
from django.db import connection, transaction
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django_tenants.utils import get_public_schema_name
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from org import audit
from org.models import SingleSignOn, User
from tenants import quotas
from weiyu import outbound
from weiyu.errors import ServiceError

DISCOVERY_PATH = "/.well-known/openid-configuration"
#: the session key of a started sign-in: ``{"state", "nonce", "verifier", "next", "at"}``
SESSION_KEY = "weiyu_sso"
#: seconds a started sign-in may take at the provider
FLOW_S = 600
#: seconds the discovery document and the keys are cached
CACHE_S = 300
#: seconds for each request to the provider
HTTP_TIMEOUT_S = 10.0
#: bytes read at most from the provider per answer
MAX_BYTES = 1_000_000
#: leeway in seconds for the ID token's times (clocks differ)
LEEWAY_S = 120


def current() -> SingleSignOn | None:
    """The tenant's single sign-on when it is on and complete (issuer and client id), else
    None; always None in the public schema (the platform admin signs in with passwords)."""
    if connection.schema_name == get_public_schema_name():
        return None
    row = SingleSignOn.objects.filter(enabled=True).order_by("pk").first()
    if row is None or not row.issuer or not row.client_id:
        return None
    return row


def password_sign_in_allowed() -> bool:
    """Whether the tenant's password forms may be used: not when single sign-on is on with
    "password sign-in off". The platform admin (public schema) always may — that is the
    break-glass, with ``manage.py sso_password_sign_in <schema> on``."""
    row = current()
    return row is None or not row.password_sign_in_off


def button(next_url: str = "") -> dict[str, str] | None:
    """What the sign-in pages show: ``{"name", "url", "password_off"}`` or None without
    single sign-on. ``url`` starts the flow and carries ``next``."""
    row = current()
    if row is None:
        return None
    url = "/account/sso/start/"
    if next_url:
        url = f"{url}?{urlencode({'next': next_url})}"
    return {"name": row.provider_name, "url": url, "password_off": row.password_sign_in_off}


# --- the provider ------------------------------------------------------------------------


def _cache_key(kind: str, issuer: str) -> str:
    digest = hashlib.sha256(issuer.encode()).hexdigest()[:32]
    return f"sso:{kind}:{digest}"


def _get_json(url: str, *, data: dict[str, str] | None = None, auth: Any = None) -> Any:
    """GET (or POST ``data`` form-encoded) ``url`` through the SSRF-guarded client; the JSON
    answer. Raises ``ServiceError("unavailable")`` for a refused address, a network error, a
    non-2xx answer or a body that is not JSON."""
    try:
        with outbound.guarded_client(timeout_s=HTTP_TIMEOUT_S, max_bytes=MAX_BYTES) as client:
            if data is None:
                response = client.get(url, headers={"Accept": "application/json"})
            else:
                response = client.post(
                    url, data=data, auth=auth, headers={"Accept": "application/json"}
                )
            body = response.read()
    except httpx2.HTTPError as exc:
        raise ServiceError(
            "unavailable",
            _("The sign-in provider cannot be reached: %(reason)s") % {"reason": exc},
        ) from exc
    if response.status_code // 100 != 2:
        raise ServiceError(
            "unavailable",
            _("The sign-in provider answered HTTP %(status)d.") % {"status": response.status_code},
        )
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ServiceError("unavailable", _("The sign-in provider's answer is not JSON.")) from exc


def provider_metadata(row: SingleSignOn, *, fresh: bool = False) -> dict[str, Any]:
    """The provider's discovery document (cached :data:`CACHE_S` s). Its ``issuer`` must be
    the configured one (OpenID Connect Discovery §4.3) and it must name the authorization,
    token and JWKS endpoints. Raises ``ServiceError("unavailable")`` otherwise."""
    issuer = row.issuer.rstrip("/")
    key = _cache_key("meta", issuer)
    metadata = None if fresh else cache.get(key)
    if metadata is None:
        metadata = _get_json(issuer + DISCOVERY_PATH)
        if not isinstance(metadata, dict) or str(metadata.get("issuer", "")).rstrip("/") != issuer:
            raise ServiceError(
                "unavailable",
                _("The provider's discovery document names another issuer than %(issuer)s.")
                % {"issuer": issuer},
            )
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if urlsplit(str(metadata.get(name, ""))).scheme not in ("http", "https"):
                raise ServiceError(
                    "unavailable",
                    _("The provider's discovery document has no %(name)s.") % {"name": name},
                )
        cache.set(key, metadata, CACHE_S)
    return metadata


def provider_keys(row: SingleSignOn, metadata: dict[str, Any], *, fresh: bool = False) -> KeySet:
    """The provider's signing keys (its JWKS, cached :data:`CACHE_S` s). Raises
    ``ServiceError("unavailable")`` when they cannot be read."""
    key = _cache_key("jwks", row.issuer.rstrip("/"))
    data = None if fresh else cache.get(key)
    if data is None:
        data = _get_json(metadata["jwks_uri"])
        cache.set(key, data, CACHE_S)
    try:
        return KeySet.import_key_set(data)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ServiceError("unavailable", _("The provider's signing keys cannot be read.")) from exc


def check_provider(row: SingleSignOn) -> None:
    """Read the discovery document and the keys now (the back office's check when the settings
    are saved). Raises ``ServiceError("unavailable")`` with the reason."""
    metadata = provider_metadata(row, fresh=True)
    provider_keys(row, metadata, fresh=True)


# --- the flow ------------------------------------------------------------------------------


def _refuse(request: HttpRequest, code: str, message: str, **data: Any) -> ServiceError:
    audit.audit_record(
        actor=None,
        action=audit.SSO_REFUSED,
        target=User,
        data={"reason": message, **data},
        ip=audit.request_ip(request),
    )
    return ServiceError(code, message)


def redirect_uri(request: HttpRequest) -> str:
    """The callback URL registered at the provider: ``<scheme>://<host>/account/sso/callback/``."""
    return request.build_absolute_uri("/account/sso/callback/")


def sign_in_start(*, request: HttpRequest, next_url: str) -> str:
    """Begin a sign-in: remember ``state``, ``nonce`` and the PKCE verifier (48 random
    characters each) with ``next_url`` in the session; return the provider's authorization
    URL (``response_type=code``, ``code_challenge_method=S256``). Raises
    ``ServiceError("not_configured")`` without single sign-on, ``("unavailable")`` when the
    provider cannot be read."""
    row = current()
    if row is None:
        raise ServiceError("not_configured", _("Single sign-on is not set up."))
    metadata = provider_metadata(row)
    state, nonce, verifier = generate_token(48), generate_token(48), generate_token(48)
    request.session[SESSION_KEY] = {
        "state": state,
        "nonce": nonce,
        "verifier": verifier,
        "next": next_url,
        "at": time.time(),
    }
    scopes = row.scopes.split()
    for needed in ("email", "openid"):
        if needed not in scopes:
            scopes.insert(0, needed)
    return prepare_grant_uri(
        metadata["authorization_endpoint"],
        client_id=row.client_id,
        response_type="code",
        redirect_uri=redirect_uri(request),
        scope=" ".join(scopes),
        state=state,
        nonce=nonce,
        code_challenge=create_s256_code_challenge(verifier),
        code_challenge_method="S256",
    )


def _pending(request: HttpRequest, state: Any) -> dict[str, Any]:
    flow = request.session.pop(SESSION_KEY, None)
    if (
        not isinstance(flow, dict)
        or not isinstance(state, str)
        or not state
        or not hmac.compare_digest(state.encode(), str(flow.get("state", "")).encode())
    ):
        raise _refuse(
            request, "invalid", _("This sign-in was not started here, or was used already.")
        )
    if time.time() - float(flow.get("at", 0)) > FLOW_S:
        raise _refuse(request, "invalid", _("This sign-in took too long. Please start again."))
    return flow


def _tokens(
    request: HttpRequest,
    row: SingleSignOn,
    metadata: dict[str, Any],
    code: str,
    flow: dict[str, Any],
) -> dict[str, Any]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri(request),
        "code_verifier": flow["verifier"],
    }
    methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    auth = None
    if "client_secret_basic" in methods:
        auth = httpx2.BasicAuth(row.client_id, row.client_secret)
    else:
        form.update(client_id=row.client_id, client_secret=row.client_secret)
    tokens = _get_json(metadata["token_endpoint"], data=form, auth=auth)
    if not isinstance(tokens, dict) or not isinstance(tokens.get("id_token"), str):
        raise _refuse(request, "invalid", _("The provider sent no ID token."))
    return tokens


def _claims(
    request: HttpRequest, row: SingleSignOn, metadata: dict[str, Any], tokens: dict, nonce: str
) -> dict[str, Any]:
    algorithms = [
        a for a in metadata.get("id_token_signing_alg_values_supported") or ["RS256"] if a != "none"
    ]
    registry = JWSRegistry(algorithms=algorithms, strict_check_header=False)
    try:
        try:
            token = jwt.decode(tokens["id_token"], provider_keys(row, metadata), registry=registry)
        except InvalidKeyIdError:  # the provider rotated its keys since we cached them
            keys = provider_keys(row, metadata, fresh=True)
            token = jwt.decode(tokens["id_token"], keys, registry=registry)
        options = {
            "iss": {"essential": True, "value": metadata["issuer"]},
            "aud": {"essential": True, "value": row.client_id},
        }
        params = {"nonce": nonce, "client_id": row.client_id}
        access_token = tokens.get("access_token")
        claims = CodeIDToken(token.claims, token.header, options, params)
        # at_hash is optional in the code flow (OpenID Connect Core 3.1.3.6): checked when sent
        if access_token and "at_hash" in claims:
            claims.params["access_token"] = access_token
        if "nonce" not in claims:
            raise _refuse(request, "invalid", _("The ID token does not carry our nonce."))
        claims.validate(leeway=LEEWAY_S)
    except ServiceError:
        raise
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise _refuse(
            request,
            "invalid",
            _("The provider's ID token is not valid (%(reason)s).") % {"reason": exc},
        ) from exc
    return dict(claims)


def _username_for(email: str) -> str:
    base = email[:140]
    username = base
    n = 1
    while User.objects.filter(username=username).exists():
        n += 1
        username = f"{base}.{n}"
    return username


def sign_in_finish(*, request: HttpRequest, params: dict[str, Any]) -> tuple[User, str]:
    """Finish a sign-in from the provider's redirect (``params``: the callback's query:
    ``state`` and ``code``, or ``error``/``error_description``). Returns the person to sign
    in and the ``next`` URL the sign-in was started with; the person is matched by e-mail or, when ``create_users`` is on, created with the default role and
    no usable password. The caller signs them in (and asks for their second factor).

    Raises ``ServiceError``: ``invalid`` (unknown or reused ``state``, an expired flow, an ID
    token that fails a check, the provider's own error), ``forbidden`` (no verified e-mail, a
    domain not allowed, no account and creation off, a disabled account, several accounts
    with the address), ``not_configured``, ``unavailable`` (the provider cannot be reached)."""
    flow = _pending(request, params.get("state"))
    row = current()
    if row is None:
        raise ServiceError("not_configured", _("Single sign-on is not set up."))
    if params.get("error"):
        raise _refuse(
            request,
            "invalid",
            _("The provider refused the sign-in: %(reason)s")
            % {"reason": str(params.get("error_description") or params["error"])[:200]},
        )
    code = params.get("code")
    if not isinstance(code, str) or not code or len(code) > 2000:
        raise _refuse(request, "invalid", _("The provider sent no code."))
    metadata = provider_metadata(row)
    tokens = _tokens(request, row, metadata, code, flow)
    claims = _claims(request, row, metadata, tokens, flow["nonce"])
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email or len(email) > 254:
        raise _refuse(request, "forbidden", _("The provider did not share an e-mail address."))
    email = email.strip()
    if claims.get("email_verified") is False:
        raise _refuse(
            request,
            "forbidden",
            _("The provider has not verified this e-mail address."),
            email=email,
        )
    domain = email.rsplit("@", 1)[1].lower()
    if row.domains and domain not in row.domains:
        raise _refuse(
            request,
            "forbidden",
            _("People with an address at %(domain)s cannot sign in here.") % {"domain": domain},
            email=email,
        )
    return _person(request, row, claims, email), str(flow.get("next") or "")


def _person(request: HttpRequest, row: SingleSignOn, claims: dict[str, Any], email: str) -> User:
    try:
        return _person_find_or_create(request, row, claims, email)
    except ServiceError as exc:
        # written after the transaction rolled back, so the refusal stays in the log
        raise _refuse(request, exc.code, exc.message, email=email) from None


@transaction.atomic
def _person_find_or_create(
    request: HttpRequest, row: SingleSignOn, claims: dict[str, Any], email: str
) -> User:
    matches = list(
        User.objects.select_for_update().filter(email__iexact=email, deleted_at__isnull=True)[:2]
    )
    if len(matches) > 1:
        raise ServiceError(
            "forbidden", _("Several accounts have this e-mail address; ask your administrator.")
        )
    if matches:
        if not matches[0].is_active:
            raise ServiceError("forbidden", _("This account is disabled."))
        return matches[0]
    if not row.create_users:
        raise ServiceError("forbidden", _("There is no account with this e-mail address."))
    quotas.check_total("seats")  # the plan's seats (tenants.quotas)
    name = claims.get("name") if isinstance(claims.get("name"), str) else ""
    user = User(
        username=_username_for(email.lower()),
        email=email,
        display_name=name[:64],
        first_name=str(claims.get("given_name") or "")[:150],
        last_name=str(claims.get("family_name") or "")[:150],
        role=row.default_role,
        is_staff=row.default_role == User.Role.ADMIN,
    )
    user.set_unusable_password()
    user.save()
    audit.audit_record(
        actor=user,
        action=audit.SSO_ACCOUNT_CREATED,
        target=user,
        data={"email": email, "issuer": row.issuer, "role": row.default_role},
        ip=audit.request_ip(request),
    )
    return user
