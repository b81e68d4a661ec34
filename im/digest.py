"""The e-mail digest of unread messages (docs/inbox.md, "Alerts when away").

Every minute (beat ``im-unread-digest``) each tenant is scanned (:func:`unread_digest`): for each
active person with an e-mail address whose preferences (:class:`org.models.AlertPreferences`)
ask for a digest after N minutes, the messages of others in their conversations (customer
conversations they serve and team chats) that are still unread, older than N minutes and not in
an earlier digest, are listed in one e-mail with a link to each conversation, sent through the
tenant's mail settings (:func:`tenants.mail.mail_send`).

Each message is in at most one digest: the participant's ``digest_seq`` is moved past the
listed messages by a conditional ``UPDATE`` before the mail goes out (a second scan running at
the same time finds nothing left to claim; a mail that fails is not sent again). Nobody with an
inbox tab open (and quiet asked for) gets a digest, nor for conversations they muted ("do not
disturb") or left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from im.models import Message, Participant
from org import alerts
from org.models import AlertPreferences, User
from tenants.mail import mail_send
from tenants.models import Domain

logger = logging.getLogger(__name__)

#: conversations listed in one digest at most (the rest are counted)
CONVERSATIONS_MAX = 30
#: unread messages shown per conversation (the rest are counted)
LINES_MAX = 3
#: the default delay of people who never chose one (AlertPreferences' default)
DEFAULT_MINUTES = AlertPreferences._meta.get_field("digest_after_minutes").default


@dataclass
class _Entry:
    conversation_id: int
    title: str
    lines: list[tuple[str, str]] = field(default_factory=list)
    count: int = 0


def base_url(schema: str) -> str:
    """``scheme://host[:port]`` at which the tenant's people reach the inbox:
    ``settings.WEIYU_PUBLIC_URL`` with ``{domain}`` filled in when set, else its primary domain
    (``https`` in production)."""
    domain = (
        Domain.objects.filter(tenant__schema_name=schema, is_primary=True)
        .values_list("domain", flat=True)
        .first()
    ) or "localhost"
    configured = getattr(settings, "WEIYU_PUBLIC_URL", "")
    if configured:
        return configured.replace("{domain}", domain).rstrip("/")
    return f"{'https' if settings.PRODUCTION else 'http'}://{domain}"


def _claim(participant: Participant, upto: int) -> bool:
    """Move the participant's ``digest_seq`` to ``upto`` unless another scan (or a read) did
    meanwhile; whether this scan owns the messages."""
    return bool(
        Participant.objects.filter(
            pk=participant.pk, digest_seq=participant.digest_seq, read_seq__lt=upto
        ).update(digest_seq=upto)
    )


def _entries(user: User, minutes: int, now) -> list[tuple[Participant, int, _Entry]]:
    cutoff = now - timedelta(minutes=minutes)
    participants = (
        Participant.objects.filter(
            user=user, left_at__isnull=True, notifications_off=False, conversation__closed_at=None
        )
        .filter(conversation__last_seq__gt=Greatest(F("read_seq"), F("digest_seq")))
        .select_related("conversation")
        .order_by("-conversation__last_message_at")
    )
    found = []
    for participant in participants[: CONVERSATIONS_MAX * 2]:
        messages = list(
            Message.objects.filter(
                conversation_id=participant.conversation_id,
                seq__gt=max(participant.read_seq, participant.digest_seq),
                created_at__lte=cutoff,
                recalled_at__isnull=True,
            )
            .exclude(sender_key=participant.member_key)
            .exclude(sender_type=Message.SenderType.SYSTEM)
            .order_by("seq")
            .values_list("seq", "sender_name", "content", "msg_type")
        )
        if not messages:
            continue
        conversation = participant.conversation
        title = conversation.title or ", ".join(dict.fromkeys(m[1] for m in messages if m[1]))
        entry = _Entry(conversation.pk, alerts.preview(title) or _("Conversation"))
        entry.count = len(messages)
        for _seq, sender, content, msg_type in messages[-LINES_MAX:]:
            text = content if msg_type == Message.Type.TEXT else _("(a file or sticker)")
            entry.lines.append((sender, alerts.preview(text)))
        found.append((participant, messages[-1][0], entry))
    return found


def _body(user: User, entries: list[_Entry], more: int, base: str) -> tuple[str, str]:
    total = sum(e.count for e in entries)
    subject = ngettext("%(n)d unread message in Weiyu", "%(n)d unread messages in Weiyu", total) % {
        "n": total
    }
    parts = [
        _("Hello %(name)s,") % {"name": user.name},
        "",
        _("These messages wait for you while you are away from the inbox:"),
        "",
    ]
    for entry in entries:
        parts.append(f"{entry.title} ({entry.count})")
        if entry.count > len(entry.lines):
            parts.append("  …")
        parts.extend(f"  {sender}: {text}" for sender, text in entry.lines)
        parts.append(f"  {base}/inbox/#c{entry.conversation_id}")
        parts.append("")
    if more:
        parts.append(
            ngettext("And %(n)d more conversation.", "And %(n)d more conversations.", more)
            % {"n": more}
        )
        parts.append("")
    parts.append(
        _("Change when you get these e-mails on the inbox's Alerts page: %(url)s")
        % {"url": f"{base}/inbox/alerts/"}
    )
    return subject, "\n".join(parts)


def unread_digest(*, now=None) -> int:
    """Send the current tenant's due digests (see the module docstring). Returns how many
    e-mails were sent."""
    now = now or timezone.now()
    schema = connection.schema_name
    prefs = {
        p.user_id: p
        for p in AlertPreferences.objects.all().only(
            "user_id", "digest_after_minutes", "quiet_when_inbox_open"
        )
    }
    users = User.objects.filter(is_active=True, deleted_at__isnull=True).exclude(email="")
    # only people with something unread are looked at closer
    users = (
        users.filter(
            participations__left_at__isnull=True,
            participations__conversation__last_seq__gt=Greatest(
                F("participations__read_seq"), F("participations__digest_seq")
            ),
        )
        .distinct()
        .order_by("pk")
    )
    base = None
    sent = 0
    for user in users:
        pref = prefs.get(user.pk)
        minutes = pref.digest_after_minutes if pref else DEFAULT_MINUTES
        quiet = pref.quiet_when_inbox_open if pref else True
        if not minutes or (quiet and alerts.inbox_open(schema=schema, user_id=user.pk)):
            continue
        with translation.override(user.language or settings.LANGUAGE_CODE):
            found = _entries(user, minutes, now)
            claimed = [entry for participant, upto, entry in found if _claim(participant, upto)]
            if not claimed:
                continue
            base = base or base_url(schema)
            listed = claimed[:CONVERSATIONS_MAX]
            subject, body = _body(user, listed, len(claimed) - len(listed), base)
        try:
            mail_send(subject=subject, body=body, to=[user.email], schema=schema)
        except OSError as exc:  # at most once: these messages are not mailed again
            logger.warning("unread digest to user %s not sent: %s", user.pk, exc)
            continue
        sent += 1
    return sent
