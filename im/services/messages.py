"""Messages: the one send path (:func:`message_send`; what it stores is validated by
:mod:`im.services.drafts`), system lines, recall, and a message's server-side ``meta``. Writes in
one transaction and publishes ``message.new`` after commit (weiyu/realtime.py); the app that owns
a conversation kind adds its behaviour through :mod:`im.hooks`.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from im import selectors, syslines
from im.hooks import send_hook_for
from im.models import Attachment, Conversation, Message, MessagingSettings, Participant
from im.search import index_terms
from im.senders import ROBOT_KEY, SYSTEM, Sender
from im.serializers import message_payload
from im.services.conversations import conversation_added_publish, participant_add
from im.services.drafts import (
    GROUP_ADMINS,
    MENTION_ALL,
    MessageDraft,
    client_msg_id_check,
    message_draft,
)
from org import alerts
from org.models import User
from tenants import metrics
from weiyu import parsing
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit


def message_send(
    *,
    conversation_id: int,
    sender: Sender,
    content: object = None,
    client_msg_id: object = None,
    msg_type: object = Message.Type.TEXT,
    attachment_id: object = None,
    sticker_id: object = None,
    mentions: object = None,
    internal: object = False,
    meta: dict[str, Any] | None = None,
    draft: MessageDraft | None = None,
) -> tuple[Message, bool]:
    """Store a message and publish ``message.new`` to every active participant after commit.

    The one send path of every message: staff chats, visitor conversations, notes, robot and
    system lines. The app that owns the conversation's kind adds its behaviour through the hook
    it registered (:mod:`im.hooks`; kefu for ``visitor`` conversations).

    ``msg_type``: ``text`` (``content`` 1-5000 chars), ``image``/``voice``/``video``/``file``
    (``attachment_id`` of a file the sender uploaded to this conversation, optional caption in
    ``content``), ``sticker`` (``sticker_id``), or ``system`` (the system sender only).
    ``mentions``: member keys of participants or ``"all"`` (group owner/admins only); mentioned
    members get ``mention_seq`` set. ``internal``: a note among staff in a visitor conversation,
    never sent to the visitor; a colleague mentioned in it who is not in the conversation is
    added to it (KF-13). ``meta``: server-side details kept with the message (robot answers'
    sources; never taken from a client). The robot sender (:func:`robot_sender`), like the system
    sender, writes without being a participant. ``draft``: fields already validated by
    :func:`message_draft` (the other content fields are then ignored).

    Returns ``(message, created)``; ``created`` is False when ``client_msg_id`` was already used by
    this sender — the stored message is returned, nothing is written, and its ``message.new`` is
    published again (:func:`message_republish`): a resend usually means the ack was lost, and the
    publish may have been lost with it (IM-12; docs/protocol.md §3).

    Cost of a plain text message without a hook: one read of the conversation's kind and active
    members, then in one transaction one statement (:data:`_WRITE_SQL`) that takes the next
    ``seq`` from the conversation row (whose lock serialises senders, making ``seq`` gap-free),
    inserts the message and moves the sender's receipt — 4 statements with BEGIN and COMMIT.
    Attachments, stickers and mentions add one query each; tests/test_send_path_queries.py pins
    the budget of each path.

    Raises ``ServiceError``: ``invalid`` (content, type, file, mentions, client_msg_id),
    ``not_found`` (no such conversation or the sender is not in it), ``conversation_closed``,
    ``forbidden`` (the sender, or the whole group, is muted; or a hook's rule).
    """
    if draft is None:
        draft = message_draft(
            sender=sender,
            conversation_id=conversation_id,
            content=content,
            msg_type=msg_type,
            attachment_id=attachment_id,
            sticker_id=sticker_id,
            mentions=mentions,
            internal=internal,
            meta=meta,
        )
    return _append(
        conversation_id=conversation_id, sender=sender, draft=draft, client_msg_id=client_msg_id
    )


def _pull_in(mentions: list[str], members: dict[str, Any]) -> list[User]:
    """Colleagues mentioned in an internal note who are not in the conversation yet."""
    wanted = [int(k[2:]) for k in mentions if k != MENTION_ALL and k not in members]
    if not wanted:
        return []
    users = list(User.objects.filter(pk__in=wanted, is_active=True))
    if len(users) != len(wanted):
        raise ServiceError(
            "invalid", _("You can only mention people of your team."), field="mentions"
        )
    return users


def _append(  # noqa: PLR0912 - the checks of one send, in the order they must run
    *, conversation_id: int, sender: Sender, draft: MessageDraft, client_msg_id: object
) -> tuple[Message, bool]:
    client_msg_id_check(client_msg_id)
    kind, members = selectors.send_context(conversation_id=conversation_id)
    is_system = sender.key in (SYSTEM.key, ROBOT_KEY)
    if not is_system and sender.key not in members:
        if dup := _resent(sender.key, client_msg_id, conversation_id, members):
            return dup, False
        raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
    role, muted_until = members.get(sender.key, ("", None))
    now = timezone.now()
    if muted_until is not None and muted_until > now:
        raise ServiceError(
            "forbidden",
            _("You are muted in this conversation until %(time)s.")
            % {"time": timezone.localtime(muted_until).strftime("%Y-%m-%d %H:%M")},
        )
    mentions = draft.mentions or []
    if draft.internal and sender.type == Message.SenderType.VISITOR:
        raise ServiceError("invalid", _("Visitors cannot write internal notes."), field="internal")
    pulled = _pull_in(mentions, members) if draft.internal else []
    unknown = [k for k in mentions if k != MENTION_ALL and k not in members and not draft.internal]
    if unknown:
        raise ServiceError(
            "invalid", _("Only members of this conversation can be mentioned."), field="mentions"
        )
    if not is_system:
        _check_rules(draft, kind=kind, role=role)
    hook = send_hook_for(kind)
    hook.prepare(conversation_id=conversation_id, sender=sender, draft=draft)
    # a non-admin cannot write while the whole group is muted: checked in the write's WHERE, so
    # a mute that lands first is never overtaken
    muted_applies = not is_system and kind == Conversation.Kind.GROUP and role not in GROUP_ADMINS
    try:
        # A savepoint only where a failure is taken back and the send goes on: a resent
        # client_msg_id (the stored message is returned). System and robot lines carry none;
        # inside a caller's transaction (an assignment, a close) they then cost two statements
        # less, and any failure rolls back to the caller's own savepoint or transaction.
        with transaction.atomic(savepoint=client_msg_id is not None):
            context = hook.before_append(
                conversation_id=conversation_id, sender=sender, draft=draft, now=now
            )
            row = _write(
                conversation_id=conversation_id,
                sender=sender,
                draft=draft,
                client_msg_id=client_msg_id,
                now=now,
                muted_applies=muted_applies,
                receipt=not is_system,
            )
            if row is None:
                if dup := _resent(sender.key, client_msg_id, conversation_id, members):
                    return dup, False
                _refused(conversation_id)
            message_id, seq = row
            metrics.message_stored(connection.schema_name, sender.type)
            message = Message(
                id=message_id,
                conversation_id=conversation_id,
                seq=seq,
                sender_key=sender.key,
                sender_type=sender.type,
                sender_user_id=sender.user_id,
                sender_name=sender.name,
                msg_type=draft.msg_type,
                content=draft.content,
                attachment=draft.attachment,
                sticker_id=draft.sticker_id,
                mentions=mentions,
                internal=draft.internal,
                ref_seq=draft.ref_seq,
                meta=draft.meta or {},
                code=draft.code,
                params=draft.params or {},
                client_msg_id=client_msg_id,
                created_at=now,
            )
            message._state.adding = False
            message._state.db = "default"
            recipients = list(members)
            for user in pulled:
                participant_add(
                    conversation_id=conversation_id,
                    member_key=user.member_key,
                    name=user.name,
                    role=Participant.Role.MEMBER,
                    user_id=user.pk,
                )
                recipients.append(user.member_key)
            if mentions:
                _mark_mentioned(conversation_id, mentions, sender.key, seq)
                _mention_alert(conversation_id, mentions, members, sender, draft.content)
            if draft.internal:
                recipients = [k for k in recipients if not selectors.is_visitor_key(k)]
            publish_event_on_commit(
                {"type": "message.new", "message": message_payload(message)}, recipients
            )
            if pulled:
                conversation_added_publish(conversation_id, [u.member_key for u in pulled])
            hook.after_append(message=message, sender=sender, context=context)
    except IntegrityError:
        if dup := _resent(sender.key, client_msg_id, conversation_id, members):
            return dup, False
        raise
    return message, True


#: One round trip for a message: take the next ``seq`` (the conversation row's lock serialises
#: senders, so ``seq`` is gap-free), insert the message, and move the sender's receipt cursors
#: (sending implies having read everything before it). Nothing is written when the conversation
#: is closed, absent, or muted for this sender: the statement then returns no row.
_WRITE_SQL = """
WITH c AS (
    UPDATE im_conversation SET last_seq = last_seq + 1, last_message_at = %(now)s
    WHERE id = %(conversation_id)s AND closed_at IS NULL
      AND NOT (all_muted AND %(muted_applies)s)
    RETURNING last_seq
), m AS (
    INSERT INTO im_message (
        conversation_id, seq, sender_key, sender_type, sender_user_id, sender_name, msg_type,
        content, attachment_id, sticker_id, mentions, internal, ref_seq, meta, code, params,
        search_vector, client_msg_id, created_at
    )
    SELECT %(conversation_id)s, c.last_seq, %(sender_key)s, %(sender_type)s, %(sender_user_id)s,
        %(sender_name)s, %(msg_type)s, %(content)s, %(attachment_id)s, %(sticker_id)s,
        %(mentions)s::jsonb, %(internal)s, %(ref_seq)s, %(meta)s::jsonb, %(code)s,
        %(params)s::jsonb,
        CASE WHEN %(terms)s = '' THEN NULL ELSE to_tsvector('simple'::regconfig, %(terms)s) END,
        %(client_msg_id)s, %(now)s
    FROM c
    RETURNING id, seq
), r AS (
    UPDATE im_participant SET read_seq = c.last_seq, delivered_seq = c.last_seq
    FROM c
    WHERE %(receipt)s AND conversation_id = %(conversation_id)s AND member_key = %(sender_key)s
)
SELECT id, seq FROM m
"""


def _write(
    *,
    conversation_id: int,
    sender: Sender,
    draft: MessageDraft,
    client_msg_id: object,
    now: Any,
    muted_applies: bool,
    receipt: bool,
) -> tuple[int, int] | None:
    """Run :data:`_WRITE_SQL`; ``(id, seq)`` of the new message, or None when nothing was
    written. Raises ``IntegrityError`` when this sender's ``client_msg_id`` is taken."""
    terms = index_terms(
        draft.attachment.name if draft.attachment and not draft.content else draft.content
    )
    with connection.cursor() as cursor:
        cursor.execute(
            _WRITE_SQL,
            {
                "conversation_id": conversation_id,
                "now": now,
                "muted_applies": muted_applies,
                "sender_key": sender.key,
                "sender_type": sender.type,
                "sender_user_id": sender.user_id,
                "sender_name": sender.name,
                "msg_type": draft.msg_type,
                "content": draft.content,
                "attachment_id": draft.attachment.pk if draft.attachment else None,
                "sticker_id": draft.sticker_id,
                "mentions": json.dumps(draft.mentions or []),
                "internal": draft.internal,
                "ref_seq": draft.ref_seq,
                "meta": json.dumps(draft.meta or {}, cls=DjangoJSONEncoder),
                "code": draft.code,
                "params": json.dumps(draft.params or {}, cls=DjangoJSONEncoder),
                "terms": terms or "",
                "client_msg_id": client_msg_id,
                "receipt": receipt,
            },
        )
        return cursor.fetchone()


def _refused(conversation_id: int) -> None:
    """Why :func:`_write` wrote nothing: ``conversation_closed`` (closed or absent) or
    ``forbidden`` (the whole group is muted)."""
    state = (
        Conversation.objects.filter(pk=conversation_id)
        .values_list("closed_at", "all_muted")
        .first()
    )
    if state is not None and state[0] is None and state[1]:
        raise ServiceError("forbidden", _("Only the group owner and admins can send right now."))
    raise ServiceError(
        "conversation_closed", _("This conversation has ended."), field="conversation_id"
    )


def _check_rules(draft: MessageDraft, *, kind: str | None, role: str) -> None:
    """Rules that depend on the kind of conversation and the sender's role in it (the whole
    group's mute is checked by the write itself, :data:`_WRITE_SQL`)."""
    if draft.internal and kind != Conversation.Kind.VISITOR:
        raise ServiceError(
            "invalid", _("Internal notes belong in customer conversations."), field="internal"
        )
    if MENTION_ALL in (draft.mentions or []) and (
        kind != Conversation.Kind.GROUP or role not in GROUP_ADMINS
    ):
        raise ServiceError(
            "forbidden",
            _("Only the group owner and admins can mention everyone."),
            field="mentions",
        )


def _mention_alert(
    conversation_id: int,
    mentions: list[str],
    members: dict[str, Any],
    sender: Sender,
    content: str,
) -> None:
    """A web push to the people mentioned who are away (:func:`org.alerts.alert`; no query)."""
    keys = members if MENTION_ALL in mentions else mentions
    user_ids = [int(k[2:]) for k in keys if k.startswith("u:") and k[2:].isdigit()]
    alerts.alert(
        kind="mention",
        user_ids=user_ids,
        title=gettext_noop("%(name)s mentioned you"),
        body="%(preview)s",
        params={"name": sender.name, "preview": alerts.preview(content)},
        url=f"/inbox/#c{conversation_id}",
        exclude_user_id=sender.user_id,
    )


def _mark_mentioned(conversation_id: int, mentions: list[str], sender_key: str, seq: int) -> None:
    targets = Participant.objects.filter(conversation_id=conversation_id, left_at__isnull=True)
    if MENTION_ALL not in mentions:
        targets = targets.filter(member_key__in=mentions)
    targets.exclude(member_key=sender_key).update(mention_seq=Greatest(F("mention_seq"), seq))


def message_republish(message: Message) -> None:
    """Publish ``message.new`` for a stored ``message`` again, after commit, to the conversation's
    active participants now (staff only for an internal note). For a resend of a stored message
    whose first publish may have been lost with its ack (a web process that died between its
    commit and its publish); clients ignore a ``seq`` they hold (docs/protocol.md §3)."""
    _kind, members = selectors.send_context(conversation_id=message.conversation_id)
    _republish(message, members)


def _republish(message: Message, members: dict[str, Any]) -> None:
    recipients = [
        key for key in members if not (message.internal and selectors.is_visitor_key(key))
    ]
    publish_event_on_commit(
        {"type": "message.new", "message": message_payload(message)}, recipients
    )


def _resent(
    sender_key: str, client_msg_id: object, conversation_id: int, members: dict[str, Any]
) -> Message | None:
    """The message this sender already stored under ``client_msg_id`` (published again), or
    None."""
    if client_msg_id is None:
        return None
    message = _existing(sender_key, str(client_msg_id), conversation_id)
    if message is not None:
        _republish(message, members)
    return message


def _existing(sender_key: str, client_msg_id: str, conversation_id: int) -> Message | None:
    message = selectors.message_by_client_id(sender_key=sender_key, client_msg_id=client_msg_id)
    if message is not None and message.conversation_id != conversation_id:
        raise ServiceError(
            "invalid",
            _("This client_msg_id was already used in another conversation."),
            field="client_msg_id",
        )
    return message


def system_message_post(
    *,
    conversation_id: int,
    code: str = "",
    params: dict[str, Any] | None = None,
    content: str = "",
    meta: dict[str, Any] | None = None,
    internal: bool = False,
) -> Message:
    """Post a system line (joined, ended, …) into a conversation, open or just closing, and
    publish ``message.new`` like :func:`message_send`. ``internal``: a line for staff only,
    never sent to a visitor (like an internal note).

    ``code``/``params``: a line registered in :mod:`im.syslines` and its parameters; readers
    render it in their own language, ``content`` stores it in the tenant's default language.
    Without a code, ``content`` is the line as written (a tenant's own text, which has no
    translation). ``meta``: server-side details (docs/protocol.md §2.1). Raises ``KeyError`` for
    an unknown code or a missing parameter, ``ServiceError`` as :func:`message_send`.
    """
    text = syslines.system_line_default(code, params or {}) if code else content
    message, _created = message_send(
        conversation_id=conversation_id,
        sender=SYSTEM,
        draft=MessageDraft(
            msg_type=Message.Type.SYSTEM,
            content=text[: settings.WEIYU_MESSAGE_MAX_CHARS],
            meta=meta,
            code=code,
            params=params or {},
            internal=internal,
        ),
    )
    return message


def message_recall(
    *, conversation_id: int, message_id: object, sender: Sender, client_msg_id: object
) -> tuple[Message, bool]:
    """Recall the sender's own message within the tenant's recall window (IM-5; default 120 s,
    ``MessagingSettings.recall_window_s``).

    The original keeps its ``seq`` but loses its content, attachment (the file is deleted) and
    search entry, and reads ``recalled: true`` everywhere; a ``recall`` message (``ref_seq`` = the
    original's ``seq``) is appended so clients that were offline learn it from ``sync``. Returns
    ``(recall message, created)`` like :func:`message_send` (a resend with the same
    ``client_msg_id`` is acked again).

    Raises ``ServiceError``: ``invalid``, ``not_found`` (no such message in a conversation the
    sender is in), ``forbidden`` (not the sender's, or the window has passed), ``conflict``
    (already recalled).
    """
    client_msg_id_check(client_msg_id)
    if client_msg_id is not None and (dup := _existing(sender.key, client_msg_id, conversation_id)):
        message_republish(dup)
        return dup, False
    target_id = parsing.positive_int(message_id, "message_id")
    selectors.participant_get(conversation_id=conversation_id, member_key=sender.key)
    target = Message.objects.filter(pk=target_id, conversation_id=conversation_id).first()
    if target is None or target.msg_type in (Message.Type.SYSTEM, Message.Type.RECALL):
        raise ServiceError("not_found", _("No such message."), field="message_id")
    if target.sender_key != sender.key:
        raise ServiceError("forbidden", _("You can only recall your own messages."))
    window = MessagingSettings.current().recall_window_s
    if (timezone.now() - target.created_at).total_seconds() > window:
        raise ServiceError(
            "forbidden",
            _("Messages can only be recalled within %(n)d seconds.") % {"n": window},
        )
    with transaction.atomic():
        target = Message.objects.select_for_update().get(pk=target.pk)
        if target.recalled_at is not None:
            raise ServiceError("conflict", _("This message was already recalled."))
        attachment = target.attachment
        Message.objects.filter(pk=target.pk).update(
            recalled_at=timezone.now(), content="", search_vector=None, mentions=[]
        )
        if attachment is not None:
            Message.objects.filter(pk=target.pk).update(attachment=None)
            transaction.on_commit(lambda: _attachment_delete(attachment.pk))
        result = _append(
            conversation_id=conversation_id,
            sender=sender,
            draft=MessageDraft(
                msg_type=Message.Type.RECALL,
                content="",
                internal=target.internal,
                ref_seq=target.seq,
            ),
            client_msg_id=client_msg_id,
        )
    return result


def _attachment_delete(attachment_id: int) -> None:
    """Delete a recalled message's file and its row (nothing else refers to it)."""
    attachment = Attachment.objects.filter(pk=attachment_id).first()
    if attachment is None or attachment.messages.exists():
        return
    for field in (attachment.file, attachment.thumbnail):
        if field:
            field.delete(save=False)
    attachment.delete()


# --- for apps built on conversations (kefu) --------------------------------------------------------


def conversations_redact(*, conversation_ids: list[int], member_key: str, name: str) -> int:
    """Erase what people wrote in these conversations (a privacy erasure, kefu.privacy): every
    message that is not an automatic line loses its content, mentions, search index and
    attachment, and gets ``meta = {"erased": true}`` (clients show "removed at the customer's
    request"); ``seq``, sender and time stay, for statistics. The member ``member_key``'s
    participant name becomes ``name``; conversation titles are emptied. Files leave the
    storage after the commit. Returns how many messages were redacted."""
    ids = list(conversation_ids)
    if not ids:
        return 0
    attachment_ids = list(
        Message.objects.filter(conversation_id__in=ids, attachment__isnull=False).values_list(
            "attachment_id", flat=True
        )
    ) + list(Attachment.objects.filter(conversation_id__in=ids).values_list("pk", flat=True))
    count = (
        Message.objects.filter(conversation_id__in=ids)
        .exclude(msg_type=Message.Type.SYSTEM)
        .update(
            content="",
            search_vector=None,
            mentions=[],
            attachment=None,
            sticker=None,
            meta={"erased": True},
        )
    )
    Participant.objects.filter(conversation_id__in=ids, member_key=member_key).update(name=name)
    Message.objects.filter(conversation_id__in=ids, sender_key=member_key).update(sender_name=name)
    Conversation.objects.filter(pk__in=ids).update(title="")
    for attachment_id in set(attachment_ids):
        transaction.on_commit(lambda pk=attachment_id: _attachment_delete(pk))
    return count


def message_meta_update(*, message_id: int, meta: dict[str, Any]) -> None:
    """Replace a message's ``meta`` (e.g. the visitor's rating of a robot answer in
    ``meta["robot"]["feedback"]``). Content, sender and ``seq`` never change. The caller holds
    the row lock when it read the old ``meta`` to build the new one, and publishes the event its
    clients expect (none is sent here)."""
    Message.objects.filter(pk=message_id).update(meta=meta)
