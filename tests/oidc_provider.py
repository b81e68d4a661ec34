"""A small OpenID Connect provider for the single sign-on tests, run in its own process
(``python -m tests.oidc_provider --port N``; ``tests.servers.oidc_provider_start``).

Real HTTP and real signatures: an RSA key made at start (joserfc) signs RS256 ID tokens, its
public half is served as the JWKS. It does what a provider such as Keycloak does for the
authorization code flow with PKCE:

- ``GET /.well-known/openid-configuration``, ``GET /jwks``, ``GET /healthz``;
- ``GET /authorize`` checks the client, ``redirect_uri``, ``response_type=code``, ``scope``
  with ``openid`` and an S256 ``code_challenge``, and shows a sign-in page (e-mail, password)
  whose form carries the request's parameters in hidden fields;
- ``POST /authorize`` checks the password and sends the browser to ``redirect_uri`` with a
  single-use ``code`` and the ``state``; the ``nonce`` it puts in the ID token is the form's;
- ``POST /token`` (client secret in HTTP Basic or the body) checks the code (once, 60 s), the
  ``redirect_uri`` and the PKCE verifier and answers ``access_token`` and ``id_token``.

Environment: ``OIDC_CLIENT_ID``, ``OIDC_CLIENT_SECRET``, ``OIDC_USERS`` (JSON ``{email:
password}``); optional ``OIDC_UNVERIFIED`` (comma-separated e-mails sent with
``email_verified: false``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import os
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

KEY = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8), "use": "sig"})
CLIENT_ID = os.environ.get("OIDC_CLIENT_ID", "weiyu")
CLIENT_SECRET = os.environ.get("OIDC_CLIENT_SECRET", "")
USERS: dict[str, str] = json.loads(os.environ.get("OIDC_USERS", "{}"))
UNVERIFIED = {e for e in os.environ.get("OIDC_UNVERIFIED", "").split(",") if e}
PARAMS = ("client_id", "redirect_uri", "response_type", "scope", "state", "nonce")
PARAMS_PKCE = ("code_challenge", "code_challenge_method")
_codes: dict[str, dict] = {}
_lock = threading.Lock()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Provider(BaseHTTPRequestHandler):
    issuer = ""

    def log_message(self, fmt: str, *args: object) -> None:  # into the process log
        print(fmt % args, flush=True)

    # --- helpers
    def _send(self, status: int, body: str | bytes, ctype: str, headers: dict | None = None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload), "application/json")

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    def _page(self, params: dict[str, str], error: str = "", status: int = 200) -> None:
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(params.get(k, ""))}">'
            for k in (*PARAMS, *PARAMS_PKCE)
        )
        note = f'<p id="error">{html.escape(error)}</p>' if error else ""
        body = f"""<!doctype html><html><head><title>Test IdP sign-in</title></head><body>
<h1>Test IdP</h1>{note}
<form method="post" action="/authorize">{hidden}
<label>E-mail <input name="email" id="email"></label>
<label>Password <input name="password" id="password" type="password"></label>
<button type="submit" id="idp-submit">Sign in</button></form></body></html>"""
        self._send(status, body, "text/html; charset=utf-8")

    def _check_request(self, params: dict[str, str]) -> str:
        """What is wrong with an authorization request, or ``""``."""
        problems = [
            (params.get("client_id") != CLIENT_ID, "unknown client"),
            (params.get("response_type") != "code", "only response_type=code"),
            ("openid" not in (params.get("scope") or "").split(), "scope must contain openid"),
            (
                urlsplit(params.get("redirect_uri") or "").scheme not in ("http", "https"),
                "bad redirect_uri",
            ),
            (
                params.get("code_challenge_method") != "S256" or not params.get("code_challenge"),
                "PKCE with S256 is required",
            ),
            (not params.get("state") or not params.get("nonce"), "state and nonce are required"),
        ]
        return next((message for wrong, message in problems if wrong), "")

    # --- endpoints
    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/healthz":
            self._send(200, "ok", "text/plain")
        elif parts.path == "/.well-known/openid-configuration":
            self._json(
                200,
                {
                    "issuer": self.issuer,
                    "authorization_endpoint": f"{self.issuer}/authorize",
                    "token_endpoint": f"{self.issuer}/token",
                    "jwks_uri": f"{self.issuer}/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_basic",
                        "client_secret_post",
                    ],
                    "code_challenge_methods_supported": ["S256"],
                },
            )
        elif parts.path == "/jwks":
            self._json(200, {"keys": [KEY.as_dict(private=False)]})
        elif parts.path == "/authorize":
            params = {k: v[0] for k, v in parse_qs(parts.query).items()}
            problem = self._check_request(params)
            if problem:
                self._send(400, problem, "text/plain")
            else:
                self._page(params)
        else:
            self._send(404, "not found", "text/plain")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        form = self._form()
        if path == "/authorize":
            self._authorize(form)
        elif path == "/token":
            self._token(form)
        else:
            self._send(404, "not found", "text/plain")

    def _authorize(self, form: dict[str, str]) -> None:
        problem = self._check_request(form)
        if problem:
            self._send(400, problem, "text/plain")
            return
        email = form.get("email", "")
        if USERS.get(email) is None or USERS[email] != form.get("password"):
            self._page(form, "Wrong e-mail or password.", 401)
            return
        code = secrets.token_urlsafe(24)
        with _lock:
            _codes[code] = {**form, "at": time.time()}
        target = f"{form['redirect_uri']}?{urlencode({'code': code, 'state': form['state']})}"
        self._send(302, "", "text/plain", {"Location": target})

    def _token(self, form: dict[str, str]) -> None:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, client_secret = decoded.partition(":")
        if client_id != CLIENT_ID or client_secret != CLIENT_SECRET:
            self._json(401, {"error": "invalid_client"})
            return
        with _lock:
            grant = _codes.pop(form.get("code", ""), None)
        if grant is None or time.time() - grant["at"] > 60:
            self._json(400, {"error": "invalid_grant"})
            return
        if form.get("redirect_uri") != grant["redirect_uri"]:
            self._json(400, {"error": "invalid_grant", "error_description": "redirect_uri"})
            return
        verifier = form.get("code_verifier", "")
        if b64url(hashlib.sha256(verifier.encode()).digest()) != grant["code_challenge"]:
            self._json(400, {"error": "invalid_grant", "error_description": "PKCE"})
            return
        access_token = secrets.token_urlsafe(32)
        now = int(time.time())
        email = grant["email"]
        claims = {
            "iss": self.issuer,
            "sub": hashlib.sha256(email.encode()).hexdigest()[:20],
            "aud": CLIENT_ID,
            "exp": now + 300,
            "iat": now,
            "nonce": grant["nonce"],
            "email": email,
            "email_verified": email not in UNVERIFIED,
            "name": email.split("@")[0].replace(".", " ").title(),
            "at_hash": b64url(hashlib.sha256(access_token.encode()).digest()[:16]),
        }
        id_token = jwt.encode({"alg": "RS256", "kid": KEY.kid}, claims, KEY)
        self._json(
            200,
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": id_token,
            },
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    Provider.issuer = f"http://127.0.0.1:{args.port}"
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Provider)
    print(f"oidc provider on {Provider.issuer}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
