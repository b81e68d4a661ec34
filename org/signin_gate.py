"""The sign-in gate: password sign-ins and password-reset requests in front of Django, in ASGI
(docs/security.md, "Sign-in throttling"; docs/benchmarks.md, "Login flood").

A ``POST`` to ``/inbox/login/`` or ``/admin/login/`` (tenant back office and platform admin) or
``/account/password/reset/`` passes here before any Django code runs:

1. **The budget, read without the database.** The tenant comes from the ``Host`` header through
   the websockets' cached lookup (:func:`weiyu.asgi_tenancy.resolve_tenant`: one shared query per
   host every 30 s, none per request). The budget's counters — :func:`org.limits.sign_in` (per
   address and per tenant) or :func:`org.limits.password_reset_gate` — are read with one Redis
   ``MGET`` (:func:`weiyu.ratelimit.apeek`). When one is already full the answer is **429** with
   ``Retry-After`` from the event loop: no thread, no session, no template of Django's, no
   django-axes write, no database connection. Under the budget the request goes on to Django,
   where :class:`org.backends.LockoutBackend` counts it (so a refused request never counts).
2. **Sign-in threads of their own.** What is let through runs on one of the process's
   ``WEIYU_SIGN_IN_THREADS`` threads (an ``asgiref`` thread-sensitive context with its own
   executor) instead of a thread of its own per request, so a flood hashes at most that many
   passwords at once, and holds at most that many database connections (none while hashing:
   :class:`org.backends.PasswordBackend`). One tenant uses at most half of them (at least one),
   so another tenant's people are not queued behind its flood; past ``WEIYU_SIGN_IN_QUEUE``
   waiting requests of one tenant the answer is 429 at once. The threads run at
   ``WEIYU_SIGN_IN_NICE`` (10) more niceness than the process (Linux, per thread): the hashing
   gets the CPU the chats leave.
3. **Refusals are slow.** Every 429 of the gate is sent ``WEIYU_SIGN_IN_REFUSAL_DELAY_MS`` (1 s)
   after the request came, while fewer than ``WEIYU_SIGN_IN_REFUSALS_HELD`` (256) are held back
   in the process (past them, at once): a botnet that waits for each answer — as
   credential-stuffing tools do — guesses at most once a second per connection, instead of as
   fast as the gate can refuse. Holding an answer costs a socket and a sleeping coroutine.

Answers: JSON ``{"error": "locked_out" | "rate_limited" | "busy", "detail", "retry_after"}`` to
clients that ask for JSON, else a small page (``templates/signin_refused.html``) in the language
of the ``django_language`` cookie or ``Accept-Language``, with the security headers of every page
(Content-Security-Policy, X-Content-Type-Options, Referrer-Policy, X-Frame-Options, HSTS over
https…) added by the same middleware, as configured
(:func:`weiyu.middleware.security_header_pairs`). An unknown host and any other request
go to Django unchanged.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import threading
import weakref
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, parse_cookie
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _

from org import limits
from weiyu import ratelimit
from weiyu.asgi_tenancy import host_from_scope, resolve_tenant
from weiyu.clientaddr import client_ip
from weiyu.errors import RateLimitedError
from weiyu.middleware import security_header_pairs

logger = logging.getLogger(__name__)

#: password sign-in forms (the inbox's; the tenant back office's and the platform admin's)
SIGN_IN_PATHS = frozenset({"/inbox/login/", "/admin/login/"})
#: "forgot your password?"
RESET_PATHS = frozenset({"/account/password/reset/"})
#: seconds a request refused because its tenant's sign-in queue is full is told to wait
BUSY_RETRY_S = 5


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return ""


def request_language(scope: dict[str, Any]) -> str:
    """The language Django's ``LocaleMiddleware`` would pick for a visitor of ``scope`` who is
    not signed in: the ``django_language`` cookie, else ``Accept-Language``, else the default."""
    request = HttpRequest()
    request.COOKIES = parse_cookie(_header(scope, b"cookie"))
    request.META["HTTP_ACCEPT_LANGUAGE"] = _header(scope, b"accept-language")
    return translation.get_language_from_request(request)


@lru_cache(maxsize=64)
def _page(language: str, detail: str) -> bytes:
    """The refusal page in ``language`` (few distinct messages: rendered once each)."""
    with translation.override(language):
        return render_to_string("signin_refused.html", {"detail": detail}).encode()


async def _refuse(
    scope: dict[str, Any], send: Any, *, code: str, detail: str, retry_after: int, language: str
) -> None:
    pool = slots()
    delay = settings.WEIYU_SIGN_IN_REFUSAL_DELAY_MS / 1000
    if delay > 0 and pool.held < settings.WEIYU_SIGN_IN_REFUSALS_HELD:
        # a client that waits for each answer (most credential-stuffing tools) is slowed down
        # to one guess a second per connection; holding an answer costs a socket, no thread
        pool.held += 1
        try:
            await asyncio.sleep(delay)
        finally:
            pool.held -= 1
    wants_json = "application/json" in _header(scope, b"accept")
    if wants_json:
        body = json.dumps({"error": code, "detail": detail, "retry_after": retry_after}).encode()
        content_type = b"application/json"
    else:
        body = _page(language, detail)
        content_type = b"text/html; charset=utf-8"
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode()),
        (b"content-language", language.encode()),
        (b"cache-control", b"no-store"),
        (b"vary", b"Accept, Accept-Language, Cookie"),
    ]
    # the headers every page gets from the security middleware (CSP, nosniff, framing, HSTS…)
    headers += [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in security_header_pairs(ASGIRequest(scope, io.BytesIO()))
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _lower_priority() -> None:
    """Give this sign-in thread ``WEIYU_SIGN_IN_NICE`` more niceness than the process (Linux
    schedules threads one by one): password hashing gets the CPU that chats leave."""
    nice = settings.WEIYU_SIGN_IN_NICE
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
    except OSError as exc:
        logger.warning("sign-in thread priority not lowered: %s", exc)


class _Slots:
    """The sign-in threads of one event loop: free executors (one thread each) and, per tenant,
    a gate of :attr:`share` and the count of requests waiting."""

    def __init__(self, threads: int) -> None:
        self.share = max(1, threads // 2)
        self.free: asyncio.Queue[ThreadPoolExecutor] = asyncio.Queue()
        self.executors = [
            ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix=f"weiyu-signin-{n}",
                initializer=_lower_priority,
            )
            for n in range(threads)
        ]
        for executor in self.executors:
            self.free.put_nowait(executor)
        self.gates: dict[str, asyncio.Semaphore] = {}
        self.waiting: Counter[str] = Counter()
        #: refusals being held back (``WEIYU_SIGN_IN_REFUSAL_DELAY_MS``)
        self.held = 0

    def gate(self, schema: str) -> asyncio.Semaphore:
        gate = self.gates.get(schema)
        if gate is None:
            gate = self.gates[schema] = asyncio.Semaphore(self.share)
        return gate


_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Slots] = weakref.WeakKeyDictionary()


def _shutdown(executors: list[ThreadPoolExecutor]) -> None:
    for executor in executors:
        executor.shutdown(wait=False)


def slots() -> _Slots:
    """The running loop's sign-in threads (made on first use; stopped with the loop)."""
    loop = asyncio.get_running_loop()
    found = _slots.get(loop)
    if found is None:
        found = _slots[loop] = _Slots(settings.WEIYU_SIGN_IN_THREADS)
        weakref.finalize(loop, _shutdown, list(found.executors))
    return found


class SignInGate:
    """ASGI middleware in front of Django's HTTP application (the module docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        if path in SIGN_IN_PATHS:
            reset = False
        elif path in RESET_PATHS:
            reset = True
        else:
            return await self.app(scope, receive, send)
        try:
            tenant = await resolve_tenant(host_from_scope(scope))
        except Exception:  # the database is down: Django answers as for any other request
            logger.exception("sign-in gate: tenant lookup failed")
            tenant = None
        if tenant is None:
            return await self.app(scope, receive, send)
        schema, ip = tenant.schema_name, client_ip(scope)
        language = request_language(scope)
        budget = (
            limits.password_reset_gate(schema=schema, ip=ip)
            if reset
            else limits.sign_in(schema=schema, ip=ip)
        )
        try:
            await ratelimit.apeek(budget, language=language)
        except RateLimitedError as exc:
            code = "rate_limited" if reset else "locked_out"
            return await _refuse(
                scope,
                send,
                code=code,
                detail=exc.message,
                retry_after=exc.retry_after_s,
                language=language,
            )
        return await self._run(schema, language, scope, receive, send)

    async def _run(
        self, schema: str, language: str, scope: dict[str, Any], receive: Any, send: Any
    ) -> Any:
        """Run the request on a sign-in thread, after the tenant's earlier ones."""
        pool = slots()
        if pool.waiting[schema] >= settings.WEIYU_SIGN_IN_QUEUE:
            with translation.override(language):
                detail = _("The service is very busy right now. Please try again in a minute.")
            return await _refuse(
                scope, send, code="busy", detail=detail, retry_after=BUSY_RETRY_S, language=language
            )
        gate = pool.gate(schema)
        pool.waiting[schema] += 1
        try:
            await gate.acquire()
            try:
                executor = await pool.free.get()
            except BaseException:
                gate.release()
                raise
        finally:
            pool.waiting[schema] -= 1
            if not pool.waiting[schema]:
                del pool.waiting[schema]
        try:
            async with ThreadSensitiveContext(executor=executor):
                return await self.app(scope, receive, send)
        finally:
            pool.free.put_nowait(executor)
            gate.release()
