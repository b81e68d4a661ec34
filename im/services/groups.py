"""Services for staff conversations: 1:1 chats and groups (IM-1, IM-2, IM-10, IM-11).

Every change that members must see after a reconnect is also written into the conversation as a
``system`` message (so ``sync`` replays it in order); live clients get ``conversation.added``,
``conversation.updated`` or ``conversation.removed`` (docs/api.md §2). Permission rules follow
Bytedesk / WeChat Work: the owner does everything, admins manage ordinary members and settings,
members may leave. Lock order: conversation row first, then participants.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from im import selectors
from im.models import Attachment, Conversation, MessagingSettings, Participant
from im.senders import Sender as _Sender
from im.serializers import member_state_payload
from im.services.conversations import (
    conversation_added_publish,
    conversation_close,
    conversation_create,
    participant_add,
    participant_remove,
)
from im.services.drafts import GROUP_ADMINS
from im.services.messages import system_message_post
from org.models import User
from weiyu import parsing
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit

TITLE_MAX = 100
CATEGORY_MAX = 64
ANNOUNCEMENT_MAX = 2000
MUTE_MAX_MINUTES = 30 * 24 * 60


def _user_sender(user: User) -> _Sender:
    return _Sender(key=user.member_key, type="agent", name=user.name, user_id=user.pk)


def _active_users(user_ids: object, *, field: str = "user_ids") -> list[User]:
    if not isinstance(user_ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in user_ids
    ):
        raise ServiceError("invalid", _("Give a list of user ids."), field=field)
    ids = list(dict.fromkeys(user_ids))
    users = list(User.objects.filter(pk__in=ids, is_active=True).order_by("pk"))
    if len(users) != len(ids):
        raise ServiceError("invalid", _("Some of these people do not exist."), field=field)
    return users


def _text(value: object, *, field: str, limit: int, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):  # a missing required value is "must be text" here
        raise ServiceError("invalid", _("%(field)s must be text.") % {"field": field}, field=field)
    return parsing.text(value, field, limit, required=required)


# --- 1:1 -----------------------------------------------------------------------------------------


def direct_get_or_create(*, user: User, other_user_id: object) -> Conversation:
    """The one 1:1 conversation between ``user`` and another active user, created on first use.

    Race-free: ``Conversation.direct_key`` (the two member keys, sorted) is unique. The new chat is
    announced with ``conversation.added`` to both. Raises ``ServiceError("invalid")`` for oneself,
    an unknown or inactive user.
    """
    (other,) = _active_users(
        [other_user_id] if other_user_id is not None else None, field="user_id"
    )
    if other.pk == user.pk:
        raise ServiceError("invalid", _("You cannot start a chat with yourself."), field="user_id")
    key = "|".join(sorted([user.member_key, other.member_key]))
    existing = Conversation.objects.filter(direct_key=key).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            conversation = conversation_create(kind=Conversation.Kind.DIRECT)
            conversation.direct_key = key
            conversation.created_by = user
            conversation.save(update_fields=["direct_key", "created_by"])
            for person in (user, other):
                participant_add(
                    conversation=conversation,
                    member_key=person.member_key,
                    name=person.name,
                    role=Participant.Role.MEMBER,
                    user_id=person.pk,
                )
            conversation_added_publish(conversation.pk, [user.member_key, other.member_key])
    except IntegrityError:
        return Conversation.objects.get(direct_key=key)
    return conversation


# --- groups --------------------------------------------------------------------------------------


def _group_for(
    actor: User, conversation_id: object, *, lock: bool = False
) -> tuple[Conversation, Participant]:
    """The open group and the actor's membership; ``not_found`` unless the actor is a member."""
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
        raise ServiceError("not_found", _("No such group."), field="conversation_id")
    qs = Conversation.objects.filter(pk=conversation_id, kind=Conversation.Kind.GROUP)
    conversation = (qs.select_for_update() if lock else qs).first()
    me = (
        Participant.objects.filter(
            conversation_id=conversation_id, member_key=actor.member_key, left_at__isnull=True
        ).first()
        if conversation is not None
        else None
    )
    if conversation is None or me is None:
        raise ServiceError("not_found", _("No such group."), field="conversation_id")
    return conversation, me


def _require_open(conversation: Conversation) -> None:
    if conversation.closed_at is not None:
        raise ServiceError("conversation_closed", _("This group was dissolved."))


def _require(me: Participant, roles: set[str], message: str) -> None:
    if me.role not in roles:
        raise ServiceError("forbidden", message)


def _check_limit(conversation_id: int | None, adding: int) -> None:
    limit = MessagingSettings.current().group_max_members
    current = (
        Participant.objects.filter(conversation_id=conversation_id, left_at__isnull=True).count()
        if conversation_id
        else 0
    )
    if current + adding > limit:
        raise ServiceError(
            "conflict",
            _("A group can have at most %(limit)d members.") % {"limit": limit},
            field="user_ids",
        )


def _avatar(avatar_id: object, actor: User, conversation_id: int | None) -> Attachment | None:
    if avatar_id is None:
        return None
    if isinstance(avatar_id, bool) or not isinstance(avatar_id, int):
        raise ServiceError("invalid", _("avatar_id must be an integer."), field="avatar_id")
    attachment = Attachment.objects.filter(
        pk=avatar_id, uploader_key=actor.member_key, kind=Attachment.Kind.IMAGE
    ).first()
    if attachment is None or (
        attachment.conversation_id is not None and attachment.conversation_id != conversation_id
    ):
        raise ServiceError("invalid", _("Upload an image first."), field="avatar_id")
    return attachment


def _publish_updated(conversation_id: int, changes: dict[str, Any]) -> None:
    publish_event_on_commit(
        {"type": "conversation.updated", "conversation_id": conversation_id, "changes": changes},
        selectors.active_member_keys(conversation_id=conversation_id),
    )


def group_create(
    *,
    creator: User,
    title: object,
    member_ids: object,
    category: object = None,
    announcement: object = None,
    avatar_id: object = None,
) -> Conversation:
    """Create a group owned by ``creator`` with ``member_ids`` (user ids; the creator is added).

    Limits: title 1-100 chars, category ≤ 64, announcement ≤ 2000, members ≤ the tenant's group
    size limit (``MessagingSettings.group_max_members``, default 500). Every member gets
    ``conversation.added``. Raises ``ServiceError("invalid"|"conflict")``.
    """
    name = _text(title, field="title", limit=TITLE_MAX, required=True)
    members = [u for u in _active_users(member_ids or [], field="member_ids") if u.pk != creator.pk]
    _check_limit(None, len(members) + 1)
    avatar = _avatar(avatar_id, creator, None)
    with transaction.atomic():
        conversation = conversation_create(kind=Conversation.Kind.GROUP, title=name)
        conversation.category = _text(category, field="category", limit=CATEGORY_MAX)
        conversation.announcement = _text(
            announcement, field="announcement", limit=ANNOUNCEMENT_MAX
        )
        conversation.announcement_at = timezone.now() if conversation.announcement else None
        conversation.created_by = creator
        conversation.avatar = avatar
        conversation.save()
        if avatar is not None and avatar.conversation_id is None:
            Attachment.objects.filter(pk=avatar.pk).update(conversation=conversation)
        participant_add(
            conversation=conversation,
            member_key=creator.member_key,
            name=creator.name,
            role=Participant.Role.OWNER,
            user_id=creator.pk,
        )
        for user in members:
            participant_add(
                conversation=conversation,
                member_key=user.member_key,
                name=user.name,
                role=Participant.Role.MEMBER,
                user_id=user.pk,
            )
        system_message_post(
            conversation_id=conversation.pk,
            code="group.created",
            params={"actor": creator.name, "title": name},
        )
        conversation_added_publish(
            conversation.pk, [creator.member_key] + [u.member_key for u in members]
        )
    return conversation


def group_update(*, actor: User, conversation_id: object, changes: dict[str, Any]) -> Conversation:
    """Change a group's ``title``, ``category``, ``announcement``, ``avatar_id`` (None clears) or
    ``all_muted`` (owner and admins). Posts a system line per change and publishes
    ``conversation.updated``. Raises ``ServiceError("invalid"|"forbidden"|"not_found"|
    "conversation_closed")``.
    """
    allowed = {"title", "category", "announcement", "avatar_id", "all_muted"}
    if not isinstance(changes, dict) or not changes or set(changes) - allowed:
        raise ServiceError(
            "invalid", _("Change one of: %(fields)s.") % {"fields": ", ".join(sorted(allowed))}
        )
    with transaction.atomic():
        conversation, me = _group_for(actor, conversation_id, lock=True)
        _require_open(conversation)
        _require(me, GROUP_ADMINS, _("Only the group owner and admins can change the group."))
        lines: list[tuple[str, dict[str, Any]]] = []
        done: dict[str, Any] = {}
        fields: list[str] = []
        if "title" in changes:
            conversation.title = _text(
                changes["title"], field="title", limit=TITLE_MAX, required=True
            )
            fields.append("title")
            done["title"] = conversation.title
            lines.append(("group.renamed", {"actor": actor.name, "title": conversation.title}))
        if "category" in changes:
            conversation.category = _text(changes["category"], field="category", limit=CATEGORY_MAX)
            fields.append("category")
            done["category"] = conversation.category
        if "announcement" in changes:
            conversation.announcement = _text(
                changes["announcement"], field="announcement", limit=ANNOUNCEMENT_MAX
            )
            conversation.announcement_at = timezone.now()
            fields += ["announcement", "announcement_at"]
            done["announcement"] = conversation.announcement
            done["announcement_at"] = conversation.announcement_at.isoformat()
            lines.append(
                ("group.announcement", {"actor": actor.name, "text": conversation.announcement})
                if conversation.announcement
                else ("group.announcement_removed", {"actor": actor.name})
            )
        if "avatar_id" in changes:
            avatar = _avatar(changes["avatar_id"], actor, conversation.pk)
            if avatar is not None and avatar.conversation_id is None:
                Attachment.objects.filter(pk=avatar.pk).update(conversation=conversation)
            conversation.avatar = avatar
            fields.append("avatar")
            done["avatar_id"] = avatar.pk if avatar else None
            lines.append(("group.avatar", {"actor": actor.name}))
        if "all_muted" in changes:
            conversation.all_muted = parsing.boolean(changes["all_muted"], "all_muted")
            fields.append("all_muted")
            done["all_muted"] = conversation.all_muted
            lines.append(
                (
                    "group.all_muted" if conversation.all_muted else "group.all_unmuted",
                    {"actor": actor.name},
                )
            )
        conversation.save(update_fields=fields)
        for code, params in lines:
            system_message_post(conversation_id=conversation.pk, code=code, params=params)
        _publish_updated(conversation.pk, done)
    return conversation


def group_dissolve(*, actor: User, conversation_id: object) -> Conversation:
    """Dissolve a group (owner only): a last system line, then the conversation is closed — its
    history stays readable, nobody can send. Members get ``conversation.closed``."""
    with transaction.atomic():
        conversation, me = _group_for(actor, conversation_id, lock=True)
        _require_open(conversation)
        _require(me, {Participant.Role.OWNER}, _("Only the group owner can dissolve the group."))
        system_message_post(
            conversation_id=conversation.pk,
            code="group.dissolved",
            params={"actor": actor.name},
        )
    return conversation_close(conversation_id=conversation.pk, closed_by=_user_sender(actor))


def group_members_add(
    *, actor: User, conversation_id: object, user_ids: object
) -> list[Participant]:
    """Invite people (owner and admins). Over the group size limit nobody is added (``conflict``).
    New members get ``conversation.added``; the others ``conversation.updated``."""
    users = _active_users(user_ids)
    if not users:
        raise ServiceError("invalid", _("Choose at least one person."), field="user_ids")
    with transaction.atomic():
        conversation, me = _group_for(actor, conversation_id, lock=True)
        _require_open(conversation)
        _require(me, GROUP_ADMINS, _("Only the group owner and admins can invite people."))
        present = set(
            Participant.objects.filter(
                conversation_id=conversation.pk, left_at__isnull=True
            ).values_list("member_key", flat=True)
        )
        new = [u for u in users if u.member_key not in present]
        if not new:
            return []
        _check_limit(conversation.pk, len(new))
        added = [
            participant_add(
                conversation=conversation,
                member_key=u.member_key,
                name=u.name,
                role=Participant.Role.MEMBER,
                user_id=u.pk,
            )
            for u in new
        ]
        system_message_post(
            conversation_id=conversation.pk,
            code="group.invited",
            params={"actor": actor.name, "names": [u.name for u in new]},
        )
        _publish_updated(conversation.pk, {"members": True})
        conversation_added_publish(conversation.pk, [u.member_key for u in new])
    return added


def group_member_remove(*, actor: User, conversation_id: object, user_id: object) -> None:
    """Remove a member, or leave when ``user_id`` is the actor. The owner removes anyone, admins
    remove ordinary members; the owner must transfer ownership before leaving. The removed member
    gets ``conversation.removed`` and stops receiving at once."""
    with transaction.atomic():
        conversation, me = _group_for(actor, conversation_id, lock=True)
        _require_open(conversation)
        target = _member(conversation.pk, user_id)
        leaving = target.pk == me.pk
        if leaving and me.role == Participant.Role.OWNER:
            raise ServiceError(
                "conflict", _("Transfer the ownership to someone else before leaving.")
            )
        if not leaving:
            _require(me, GROUP_ADMINS, _("Only the group owner and admins can remove people."))
            if target.role in GROUP_ADMINS and me.role != Participant.Role.OWNER:
                raise ServiceError("forbidden", _("Only the group owner can remove an admin."))
        participant_remove(conversation_id=conversation.pk, member_key=target.member_key)
        publish_event_on_commit(
            {
                "type": "conversation.removed",
                "conversation_id": conversation.pk,
                "reason": "left" if leaving else "removed",
            },
            [target.member_key],
        )
        system_message_post(
            conversation_id=conversation.pk,
            code="group.left" if leaving else "group.removed",
            params={"name": target.name} if leaving else {"actor": actor.name, "name": target.name},
        )
        _publish_updated(conversation.pk, {"members": True})


def _member(conversation_id: int, user_id: object) -> Participant:
    if isinstance(user_id, bool) or not isinstance(user_id, int):
        raise ServiceError("invalid", _("user_id must be an integer."), field="user_id")
    target = Participant.objects.filter(
        conversation_id=conversation_id, member_key=f"u:{user_id}", left_at__isnull=True
    ).first()
    if target is None:
        raise ServiceError("not_found", _("This person is not in the group."), field="user_id")
    return target


def group_member_update(
    *,
    actor: User,
    conversation_id: object,
    user_id: object,
    role: object = None,
    muted_minutes: object = None,
) -> Participant:
    """Make a member an admin or a member again (owner only), or mute them for ``muted_minutes``
    (1-43200; 0 unmutes; owner, or admins for ordinary members). The target's tabs get
    ``member.state``, everyone ``conversation.updated``; a system line records it."""
    if role is None and muted_minutes is None:
        raise ServiceError("invalid", _("Give role or muted_minutes."))
    with transaction.atomic():
        conversation, me = _group_for(actor, conversation_id, lock=True)
        _require_open(conversation)
        target = _member(conversation.pk, user_id)
        if target.role == Participant.Role.OWNER:
            raise ServiceError("forbidden", _("The group owner cannot be changed this way."))
        fields: list[str] = []
        lines: list[str] = []
        if role is not None:
            _require(me, {Participant.Role.OWNER}, _("Only the group owner can appoint admins."))
            if role not in (Participant.Role.ADMIN, Participant.Role.MEMBER):
                raise ServiceError("invalid", _('role must be "admin" or "member".'), field="role")
            if target.role != role:
                target.role = role
                fields.append("role")
                lines.append("group.admin" if role == Participant.Role.ADMIN else "group.member")
        if muted_minutes is not None:
            _require(me, GROUP_ADMINS, _("Only the group owner and admins can mute people."))
            if target.role == Participant.Role.ADMIN and me.role != Participant.Role.OWNER:
                raise ServiceError("forbidden", _("Only the group owner can mute an admin."))
            if (
                isinstance(muted_minutes, bool)
                or not isinstance(muted_minutes, int)
                or not 0 <= muted_minutes <= MUTE_MAX_MINUTES
            ):
                raise ServiceError(
                    "invalid",
                    _("muted_minutes must be between 0 and %(max)d.") % {"max": MUTE_MAX_MINUTES},
                    field="muted_minutes",
                )
            target.muted_until = (
                timezone.now() + timedelta(minutes=muted_minutes) if muted_minutes else None
            )
            fields.append("muted_until")
            lines.append("group.muted" if muted_minutes else "group.unmuted")
        if fields:
            target.save(update_fields=fields)
            for code in lines:
                params: dict[str, Any] = {"actor": actor.name, "name": target.name}
                if code == "group.muted":
                    params["minutes"] = muted_minutes
                system_message_post(conversation_id=conversation.pk, code=code, params=params)
            publish_event_on_commit(
                {"type": "member.state", **member_state_payload(target)}, [target.member_key]
            )
            _publish_updated(conversation.pk, {"members": True})
    return target


def group_owner_transfer(*, actor: User, conversation_id: object, user_id: object) -> Conversation:
    """Hand the group to another member (owner only); the old owner becomes an admin."""
    with transaction.atomic():
        conversation, me = _group_for(actor, conversation_id, lock=True)
        _require_open(conversation)
        _require(me, {Participant.Role.OWNER}, _("Only the group owner can transfer the group."))
        target = _member(conversation.pk, user_id)
        if target.pk == me.pk:
            raise ServiceError("invalid", _("You already own this group."), field="user_id")
        Participant.objects.filter(pk=me.pk).update(role=Participant.Role.ADMIN)
        Participant.objects.filter(pk=target.pk).update(
            role=Participant.Role.OWNER, muted_until=None
        )
        system_message_post(
            conversation_id=conversation.pk,
            code="group.owner",
            params={"actor": actor.name, "name": target.name},
        )
        for p in Participant.objects.filter(pk__in=[me.pk, target.pk]):
            publish_event_on_commit(
                {"type": "member.state", **member_state_payload(p)}, [p.member_key]
            )
        _publish_updated(conversation.pk, {"members": True, "owner": target.member_key})
    return conversation


def group_members_list(*, actor: User, conversation_id: object) -> list[Participant]:
    """Active members, owner first, then admins, then by join time (members only)."""
    conversation, _me = _group_for(actor, conversation_id)
    order = {Participant.Role.OWNER: 0, Participant.Role.ADMIN: 1}
    rows = list(
        Participant.objects.filter(conversation_id=conversation.pk, left_at__isnull=True).order_by(
            "joined_at", "id"
        )
    )
    rows.sort(key=lambda p: order.get(p.role, 2))
    return rows


def groups_leave_deleted(*, user: User) -> int:
    """Take a deleted user out of every open group (receiver of
    :data:`org.signals.user_deactivated` with ``deleted=True``); their messages stay. A group
    they owned passes to its longest-standing admin, else its longest-standing member (a group
    with nobody left is closed). Members read "… left the group". 1:1 chats are kept as they are,
    so colleagues still read them. Returns how many groups they left."""
    left = 0
    memberships = Participant.objects.filter(
        user=user,
        left_at__isnull=True,
        conversation__kind=Conversation.Kind.GROUP,
        conversation__closed_at__isnull=True,
    ).values_list("conversation_id", flat=True)
    for conversation_id in list(memberships):
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        me = Participant.objects.get(
            conversation=conversation, member_key=user.member_key, left_at__isnull=True
        )
        others = Participant.objects.filter(
            conversation=conversation, left_at__isnull=True
        ).exclude(pk=me.pk)
        heir = None
        if me.role == Participant.Role.OWNER:
            heir = (
                others.filter(role=Participant.Role.ADMIN).order_by("joined_at", "pk").first()
                or others.order_by("joined_at", "pk").first()
            )
            if heir is not None:
                Participant.objects.filter(pk=heir.pk).update(
                    role=Participant.Role.OWNER, muted_until=None
                )
        if heir is None and me.role == Participant.Role.OWNER:  # nobody left: closed
            conversation_close(conversation_id=conversation.pk, closed_by=_user_sender(user))
        participant_remove(conversation_id=conversation.pk, member_key=me.member_key)
        publish_event_on_commit(
            {"type": "conversation.removed", "conversation_id": conversation.pk, "reason": "left"},
            [me.member_key],
        )
        left += 1
        if heir is None and me.role == Participant.Role.OWNER:
            continue
        system_message_post(
            conversation_id=conversation.pk,
            code="group.left",
            params={"name": me.name},
        )
        changes: dict[str, Any] = {"members": True}
        if heir is not None:
            changes["owner"] = heir.member_key
            heir.refresh_from_db()
            publish_event_on_commit(
                {"type": "member.state", **member_state_payload(heir)}, [heir.member_key]
            )
        _publish_updated(conversation.pk, changes)
    return left
