"""Blocking visitors (KF-11): by visitor, or by IP address / network (CIDR), with an expiry.

The tenant's active blocks are read at most every :data:`TTL_S` seconds per process (at once
after a change in this process); when there are none, starting a chat or sending costs nothing.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from typing import Any

from django.db import connection
from django.db.models import Q
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext as _

from im import selectors as im_selectors
from kefu.blocking import parse_network
from kefu.models import BlockedVisitor, Session, Visitor
from kefu.senders import agent_sender
from kefu.services.sessions import session_close
from org import audit
from org.models import User
from weiyu.errors import ServiceError

TTL_S = 10.0
MAX_MINUTES = 10 * 365 * 24 * 60
_cache: dict[str, tuple[float, list[tuple[int | None, Any, dt.datetime | None]]]] = {}


def _active() -> list[tuple[int | None, Any, dt.datetime | None]]:
    schema = connection.schema_name
    hit = _cache.get(schema)
    now = time.monotonic()
    if hit is None or hit[0] < now:
        rows = []
        for visitor_id, network, expires in BlockedVisitor.objects.filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
        ).values_list("visitor_id", "network", "expires_at"):
            rows.append((visitor_id, parse_network(network) if network else None, expires))
        hit = (now + TTL_S, rows)
        _cache[schema] = hit
    return hit[1]


@receiver([post_save, post_delete], sender=BlockedVisitor)
def _changed(**_: object) -> None:
    _cache.pop(connection.schema_name, None)


def is_blocked(*, visitor_id: int | None, ip: str | None) -> bool:
    """Whether this visitor, or a visitor at this IP address, is blocked right now."""
    rules = _active()
    if not rules:
        return False
    address = None
    if ip:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            address = None
    now = timezone.now()
    for blocked_id, network, expires in rules:
        if expires is not None and expires <= now:
            continue
        if visitor_id is not None and blocked_id == visitor_id:
            return True
        if (
            address is not None
            and network is not None
            and address.version == network.version
            and address in network
        ):
            return True
    return False


def check(*, visitor: Visitor) -> None:
    """``ServiceError("forbidden")`` when the visitor (or their last IP address) is blocked."""
    if is_blocked(visitor_id=visitor.pk, ip=visitor.ip_address):
        raise ServiceError("forbidden", _("You cannot chat here."))


def block_from_conversation(
    *,
    user: User,
    conversation_id: object,
    minutes: object = None,
    reason: object = "",
    by_ip: object = False,
) -> BlockedVisitor:
    """Block the visitor of a customer conversation the agent is in (and their IP address when
    ``by_ip``), for ``minutes`` (None: for good), and close the conversation (both recorded in
    the audit log with the request's address). Agents only.
    Errors: ``forbidden``, ``not_found``, ``invalid``."""  # fmt: skip
    if not user.is_agent:
        raise ServiceError("forbidden", _("Only agents can block visitors."))
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
        raise ServiceError(
            "invalid", _("conversation_id must be an integer."), field="conversation_id"
        )
    session = (
        Session.objects.select_related("visitor")
        .filter(
            conversation_id=conversation_id,
            conversation_id__in=im_selectors.active_memberships(member_key=user.member_key).values(
                "conversation_id"
            ),
        )
        .first()
    )
    if session is None:
        raise ServiceError("not_found", _("No such conversation."))
    if minutes is not None and (
        isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_MINUTES
    ):
        raise ServiceError(
            "invalid", _("minutes must be a whole number of minutes, or null."), field="minutes"
        )
    if not isinstance(reason, str) or len(reason) > 200:
        raise ServiceError(
            "invalid", _("reason must be text of at most 200 characters."), field="reason"
        )
    visitor = session.visitor
    block = BlockedVisitor.objects.create(
        visitor=visitor,
        network=visitor.ip_address if by_ip is True and visitor.ip_address else "",
        reason=reason.strip(),
        expires_at=timezone.now() + dt.timedelta(minutes=minutes) if minutes else None,
        created_by=user,
    )
    audit.audit_record(
        actor=user,
        action=audit.BLOCK,
        target=visitor,
        data={
            "block_id": block.pk,
            "conversation_id": session.conversation_id,
            "minutes": minutes,
            "by_ip": bool(block.network),
            "reason": block.reason,
        },
    )
    if session.status != Session.Status.CLOSED:
        session_close(session_id=session.pk, closed_by=agent_sender(user))
    return block


def block_lift(*, user: User, block_id: object) -> None:
    """Lift a block (agents). Raises ``ServiceError``: ``forbidden`` (not an agent),
    ``not_found``. The tenant's cached list is dropped at once in this process (others within
    :data:`TTL_S`)."""
    if not user.is_agent:
        raise ServiceError("forbidden", _("Only agents can block visitors."))
    deleted, _rows = BlockedVisitor.objects.filter(pk=block_id).delete()
    if not deleted:
        raise ServiceError("not_found", _("No such block."))
