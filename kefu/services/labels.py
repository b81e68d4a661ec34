"""Labels on visitor conversations (KF-13): the tenant's labels, setting them on one
conversation or many, the rules that set them by themselves, and the saved views of the
inbox's list.

Every change of a conversation's labels sends ``conversation.labels`` ``{"conversation_id",
"labels": [{"id", "name", "color", "description"}]}`` after commit to the conversation's active
members and to the agents of its workgroup (their views and counts change), see
docs/protocol.md.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from im import selectors as im_selectors
from kefu import inbox_views
from kefu.models import Label, LabelRule, SavedView, Session, Workgroup
from org.models import User
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit

#: conversations one bulk change may touch
BULK_MAX = 100
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


def _admin_only(user: User) -> None:
    if not user.is_admin:
        raise ServiceError("forbidden", _("Only administrators can change labels."))


def _text(value: object, field: str, max_length: int, *, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ServiceError("invalid", _("Enter a text."), field=field)
    value = value.strip()
    if len(value) > max_length:
        raise ServiceError(
            "invalid", _("At most %(n)s characters.") % {"n": max_length}, field=field
        )
    return value


def _color(value: object) -> str:
    if not isinstance(value, str) or not _COLOR.match(value):
        raise ServiceError("invalid", _("Use a hex colour like #1f6feb."), field="color")
    return value.lower()


def label_create(
    *, user: User, name: object, color: object = "#6e7781", description: object = ""
) -> Label:
    """A new label (administrators: ``forbidden`` otherwise). ``name``: 1-50 characters,
    unique (409 ``conflict``); ``color``: ``#rrggbb``. Raises ``ServiceError("invalid")``."""
    _admin_only(user)
    name = _text(name, "name", 50, required=True)
    if Label.objects.filter(name__iexact=name).exists():
        raise ServiceError("conflict", _("A label with this name exists."), field="name")
    return Label.objects.create(
        name=name,
        color=_color(color),
        description=_text(description, "description", 200, required=False),
    )


def label_update(*, user: User, label_id: int, changes: dict[str, Any]) -> Label:
    """Rename, recolour or describe a label (administrators); errors as :func:`label_create`,
    ``not_found`` for an unknown id."""
    _admin_only(user)
    label = Label.objects.filter(pk=label_id).first()
    if label is None:
        raise ServiceError("not_found", _("No such label."))
    fields = []
    if "name" in changes:
        name = _text(changes["name"], "name", 50, required=True)
        if Label.objects.filter(name__iexact=name).exclude(pk=label.pk).exists():
            raise ServiceError("conflict", _("A label with this name exists."), field="name")
        label.name = name
        fields.append("name")
    if "color" in changes:
        label.color = _color(changes["color"])
        fields.append("color")
    if "description" in changes:
        label.description = _text(changes["description"], "description", 200, required=False)
        fields.append("description")
    if fields:
        label.save(update_fields=fields)
    return label


def label_delete(*, user: User, label_id: int) -> None:
    """Delete a label (administrators); it leaves every conversation and its rules go."""
    _admin_only(user)
    deleted, _rows = Label.objects.filter(pk=label_id).delete()
    if not deleted:
        raise ServiceError("not_found", _("No such label."))


def _ids(value: object, field: str, limit: int) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > limit:
        raise ServiceError(
            "invalid", _("A list of at most %(n)s ids is expected.") % {"n": limit}, field=field
        )
    ids = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
            raise ServiceError("invalid", _("A list of ids is expected."), field=field)
        ids.append(item)
    return list(dict.fromkeys(ids))


def _may_label(user: User, session: Session, group_ids: set[int]) -> bool:
    if user.is_admin or session.agent_id == user.pk or session.workgroup_id in group_ids:
        return True
    return (
        im_selectors.active_memberships(member_key=user.member_key)
        .filter(conversation_id=session.conversation_id)
        .exists()
    )


def _publish(sessions: list[Session]) -> None:
    """``conversation.labels`` for each session (labels loaded) to its members and the agents
    of its workgroup, after commit."""
    groups = {s.workgroup_id for s in sessions}
    agents: dict[int, set[str]] = {g: set() for g in groups}
    for user_id, workgroup_id in Workgroup.agents.through.objects.filter(
        workgroup_id__in=groups
    ).values_list("user_id", "workgroup_id"):
        agents[workgroup_id].add(f"u:{user_id}")
    for session in sessions:
        members = {
            k
            for k in im_selectors.active_member_keys(conversation_id=session.conversation_id)
            if k.startswith("u:")
        }
        publish_event_on_commit(
            {
                "type": "conversation.labels",
                "conversation_id": session.conversation_id,
                "labels": [inbox_views.label_payload(lb) for lb in session.labels.all()],
            },
            sorted(members | agents[session.workgroup_id]),
        )


def labels_change(
    *, user: User, conversation_ids: object, add: object = None, remove: object = None
) -> list[Session]:
    """Add and remove labels on visitor conversations, one or up to :data:`BULK_MAX` at once.

    ``conversation_ids``, ``add``, ``remove``: lists of ids. The user must be an administrator,
    serve the conversation, be in its workgroup or take part in it (``not_found`` otherwise,
    for every id not found too, and nothing changes). Labels already there or already gone
    are left alone. Returns the sessions with their labels loaded; sends
    ``conversation.labels`` (see the module). Raises ``ServiceError("invalid")`` for malformed
    lists or an unknown label."""
    ids = _ids(conversation_ids, "conversation_ids", BULK_MAX)
    if not ids:
        raise ServiceError(
            "invalid", _("Choose at least one conversation."), field="conversation_ids"
        )
    add_ids = _ids(add, "add", 50)
    remove_ids = [i for i in _ids(remove, "remove", 50) if i not in add_ids]
    wanted = set(add_ids) | set(remove_ids)
    if Label.objects.filter(pk__in=wanted).count() != len(wanted):
        raise ServiceError("invalid", _("No such label."), field="add" if add_ids else "remove")
    with transaction.atomic():
        sessions = list(
            Session.objects.select_for_update().filter(conversation_id__in=ids).order_by("pk")
        )
        group_ids = set(
            Workgroup.agents.through.objects.filter(user=user).values_list(
                "workgroup_id", flat=True
            )
        )
        if len(sessions) != len(ids) or not all(_may_label(user, s, group_ids) for s in sessions):
            raise ServiceError("not_found", _("No such conversation."), field="conversation_ids")
        through = Session.labels.through
        session_ids = [s.pk for s in sessions]
        if remove_ids:
            through.objects.filter(session_id__in=session_ids, label_id__in=remove_ids).delete()
        if add_ids:
            through.objects.bulk_create(
                [through(session_id=s, label_id=lb) for s in session_ids for lb in add_ids],
                ignore_conflicts=True,
            )
        sessions = list(
            Session.objects.filter(pk__in=session_ids).prefetch_related("labels").order_by("pk")
        )
        _publish(sessions)
    return sessions


def label_rules_apply(
    *, session_id: int, channel_id: int, content: str, rules: list[LabelRule]
) -> None:
    """Add the labels of the active ``rules`` matching a visitor's text (see
    :class:`kefu.models.LabelRule`) to the session; sends ``conversation.labels`` when one
    was new. No query when no rule matches."""
    text = content.lower()
    label_ids = [
        r.label_id
        for r in rules
        if r.channel_id in (None, channel_id) and (not r.keyword or r.keyword.lower() in text)
    ]
    if not label_ids:
        return
    through = Session.labels.through
    with transaction.atomic():
        have = set(through.objects.filter(session_id=session_id).values_list("label_id", flat=True))
        new = [lb for lb in dict.fromkeys(label_ids) if lb not in have]
        if not new:
            return
        through.objects.bulk_create(
            [through(session_id=session_id, label_id=lb) for lb in new], ignore_conflicts=True
        )
        _publish(list(Session.objects.filter(pk=session_id).prefetch_related("labels")))


def saved_view_create(
    *, user: User, name: object, filters: object, shared: object = False
) -> SavedView:
    """Save a combination of filters under a name (``filters``: see
    ``kefu.inbox_views.filters_clean``; 1-60 characters of name). ``shared``: for every agent,
    administrators only (``forbidden``). Raises ``ServiceError("invalid")``."""
    name = _text(name, "name", 60, required=True)
    if not isinstance(filters, dict):
        raise ServiceError("invalid", _("A JSON object is expected."), field="filters")
    clean = inbox_views.filters_clean(filters)
    if shared is not False and shared is not True:
        raise ServiceError("invalid", _("true or false is expected."), field="shared")
    if shared and not user.is_admin:
        raise ServiceError("forbidden", _("Only administrators can share a view."))
    if SavedView.objects.filter(owner=user).count() >= 50:
        raise ServiceError("conflict", _("You have saved 50 views; delete one first."))
    return SavedView.objects.create(owner=None if shared else user, name=name, filters=clean)


def saved_view_delete(*, user: User, view_id: int) -> None:
    """Delete one's own saved view, or (administrators) a shared one; ``not_found`` otherwise."""
    view = SavedView.objects.filter(pk=view_id).first()
    if view is None or not (view.owner_id == user.pk or (view.owner_id is None and user.is_admin)):
        raise ServiceError("not_found", _("No such view."))
    view.delete()
