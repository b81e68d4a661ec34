"""Alerts when away (docs/inbox.md, "Alerts when away"): a web push to a person's browsers for
the events they chose, sent only while no inbox tab of theirs is open, and the preferences that
also drive the e-mail digest of unread messages (``im.digest``).

The apps that know the events call :func:`alert` inside their transaction: assignments and
transfers (kefu), @mentions (im: team chat and internal notes), ticket notifications (tickets:
assignment, mention, SLA warning and breach). After commit one Celery task
(:func:`push_alert_task`) reads each recipient's preferences, skips those with an inbox
open (:func:`inbox_open`, the presence records the inbox sockets keep, registered by kefu with
:func:`presence_register`) and sends the push (:mod:`org.push`). Nothing is sent from a web
request or the socket's event loop.

A push carries a title, a short body (at most :data:`PREVIEW_CHARS` characters of a message) and
the inbox address to open; the text is translated into the recipient's language when sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import connection, transaction
from django.utils import translation
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context

from org import push
from org.models import AlertPreferences, User
from weiyu.errors import ServiceError

logger = logging.getLogger(__name__)

#: the kinds of event a push may be for, and the preference that allows it
KINDS: dict[str, str] = {
    "assignment": "push_assignment",
    "transfer": "push_transfer",
    "mention": "push_mention",
    "sla": "push_sla",
}
#: characters of a message shown in a push or a digest line
PREVIEW_CHARS = 80
#: the longest digest delay one may choose (minutes)
DIGEST_MAX_MINUTES = 1440

_presence: list[Callable[[str, int], bool]] = []


def presence_register(check: Callable[[str, int], bool]) -> None:
    """Add a ``check(schema, user_id) -> bool`` telling whether an inbox of the user is open
    (kefu registers its socket presence at start)."""
    if check not in _presence:
        _presence.append(check)


def inbox_open(*, schema: str, user_id: int) -> bool:
    """Whether an inbox tab of the user is connected now, by the registered checks. False when
    no check can tell (Redis down): better one alert too many than a missed one."""
    for check in _presence:
        try:
            if check(schema, user_id):
                return True
        except Exception as exc:
            logger.warning("inbox presence unreadable: %s", exc)
    return False


def preview(text: str) -> str:
    """``text`` on one line, cut at :data:`PREVIEW_CHARS` characters (an ellipsis when cut)."""
    line = " ".join((text or "").split())
    return line if len(line) <= PREVIEW_CHARS else line[: PREVIEW_CHARS - 1] + "…"


# --- preferences ------------------------------------------------------------------------------


def preferences_for(user: User) -> AlertPreferences:
    """The user's preferences; the defaults (an unsaved row) when they never changed them."""
    return AlertPreferences.objects.filter(user=user).first() or AlertPreferences(user=user)


def preferences_payload(prefs: AlertPreferences) -> dict[str, Any]:
    """``{"push": {"assignment", "transfer", "mention", "sla": bool}, "digest_after_minutes":
    int (0: off), "quiet_when_inbox_open": bool}``."""
    return {
        "push": {kind: getattr(prefs, field) for kind, field in KINDS.items()},
        "digest_after_minutes": prefs.digest_after_minutes,
        "quiet_when_inbox_open": prefs.quiet_when_inbox_open,
    }


def preferences_set(*, user: User, data: object) -> AlertPreferences:
    """Change some of the user's preferences: ``data`` is a dict with any of ``push`` (a dict of
    kind → bool), ``digest_after_minutes`` (0 to 1440) and ``quiet_when_inbox_open`` (bool).
    Returns the saved row. Raises ``ServiceError`` ``invalid`` (with ``field``) for anything
    else, nothing changed."""
    if not isinstance(data, dict):
        raise ServiceError("invalid", _("Send a JSON object."))
    unknown = set(data) - {"push", "digest_after_minutes", "quiet_when_inbox_open"}
    if unknown:
        raise ServiceError("invalid", _("Unknown field %(field)s.") % {"field": sorted(unknown)[0]})
    prefs = preferences_for(user)
    push = data.get("push", {})
    if not isinstance(push, dict) or set(push) - set(KINDS):
        raise ServiceError(
            "invalid",
            _("push is an object of %(kinds)s, each true or false.") % {"kinds": ", ".join(KINDS)},
            field="push",
        )
    for kind, value in push.items():
        if not isinstance(value, bool):
            raise ServiceError("invalid", _("Each push kind is true or false."), field="push")
        setattr(prefs, KINDS[kind], value)
    if "digest_after_minutes" in data:
        minutes = data["digest_after_minutes"]
        if (
            isinstance(minutes, bool)
            or not isinstance(minutes, int)
            or not 0 <= minutes <= DIGEST_MAX_MINUTES
        ):
            raise ServiceError(
                "invalid",
                _("The digest delay is a whole number of minutes from 0 to %(max)d.")
                % {"max": DIGEST_MAX_MINUTES},
                field="digest_after_minutes",
            )
        prefs.digest_after_minutes = minutes
    if "quiet_when_inbox_open" in data:
        if not isinstance(data["quiet_when_inbox_open"], bool):
            raise ServiceError(
                "invalid", _("This is true or false."), field="quiet_when_inbox_open"
            )
        prefs.quiet_when_inbox_open = data["quiet_when_inbox_open"]
    prefs.save()
    return prefs


# --- sending ----------------------------------------------------------------------------------


def alert(
    *,
    kind: str,
    user_ids: Iterable[int | None],
    title: str,
    body: str,
    params: dict[str, Any] | None = None,
    url: str = "/inbox/",
    exclude_user_id: int | None = None,
) -> None:
    """Push ``kind`` (one of :data:`KINDS`) to the users of ``user_ids`` (``None`` and
    ``exclude_user_id`` skipped) once the caller's transaction commits, by a Celery task.

    ``title`` and ``body`` are untranslated messages (``gettext_noop``) with ``%(name)s``
    placeholders filled from ``params`` in each recipient's language; ``url``: the inbox path
    the notification opens. No query here: the task reads preferences and subscriptions."""
    if kind not in KINDS:
        raise ValueError(f"unknown alert kind {kind!r}")
    ids = sorted({i for i in user_ids if i is not None and i != exclude_user_id})
    if not ids:
        return
    schema = connection.schema_name
    job = {
        "kind": kind,
        "user_ids": ids,
        "title": title,
        "body": body,
        "params": dict(params or {}),
        "url": url,
    }

    def enqueue() -> None:
        try:
            push_alert_task.delay(schema, job)
        except Exception as exc:  # the broker down must not fail what was done
            logger.warning("alert not queued: %s", exc)

    transaction.on_commit(enqueue)


def _render(message: str, params: dict[str, Any], language: str) -> str:
    with translation.override(language):
        text = _(message)
        try:
            return text % params if params else text
        except (KeyError, ValueError, TypeError):
            return message % params if params else message


def alert_deliver(
    *, kind: str, user_ids: list[int], title: str, body: str, params: dict[str, Any], url: str
) -> int:
    """Send one alert (in the current schema): to each active recipient whose preference allows
    ``kind``, unless an inbox of theirs is open and they asked for quiet then, to each of their
    push subscriptions (:func:`org.push.push_send`), in the person's language, else the one
    of the browser when it subscribed. Returns how many pushes were accepted."""
    schema = connection.schema_name
    prefs = {p.user_id: p for p in AlertPreferences.objects.filter(user_id__in=user_ids)}
    sent = 0
    users = User.objects.filter(pk__in=user_ids, is_active=True, deleted_at__isnull=True)
    for user in users.order_by("pk").prefetch_related("push_subscriptions"):
        pref = prefs.get(user.pk) or AlertPreferences(user=user)
        if not getattr(pref, KINDS[kind]):
            continue
        subscriptions = list(user.push_subscriptions.all())
        if not subscriptions:
            continue
        if pref.quiet_when_inbox_open and inbox_open(schema=schema, user_id=user.pk):
            continue
        for subscription in subscriptions:
            language = user.language or subscription.language or settings.LANGUAGE_CODE
            payload = {
                "title": _render(title, params, language)[:120],
                "body": _render(body, params, language)[:200],
                "url": url,
                "tag": kind,
            }
            sent += push.push_send(subscription=subscription, payload=payload)
    return sent


@shared_task(name="org.tasks.push_alert_task")
def push_alert_task(schema: str, alert: dict[str, Any]) -> int:
    """One alert of :func:`alert` (``alert``: its ``kind``, ``user_ids``, ``title``, ``body``,
    ``params`` and ``url``), pushed in the tenant's schema (:func:`alert_deliver`). Returns how
    many pushes the push services accepted."""
    with schema_context(schema):
        return alert_deliver(**alert)
