"""Custom attributes (issue 13): values on contacts (``Visitor.attributes``) and conversations
(``Session.attributes``) checked against the tenant's definitions
(:class:`kefu.models.AttributeDefinition`), written by agents in the inbox's visitor panel and
through the API, and by ``Weiyu.identify`` for contact attributes.

Stored values are JSON: text (≤ :data:`TEXT_MAX` characters), number (int or float), date
(``YYYY-MM-DD``), list (one of the allowed values, as text), boolean. Writing ``null`` removes a
value. A key without a definition is refused (``invalid``), so what agents, routing rules and
filters read always has a known kind.

Contact attributes are written by ``kefu.services.visitors.contact_attributes_set`` (which sends
``visitor.updated`` and the ``contact.updated`` webhook); a conversation's change sends ``conversation.attributes``
``{"conversation_id", "attributes"}`` to its agents and to its workgroup's agents.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from im import selectors as im_selectors
from kefu.models import AttributeDefinition, Session, Workgroup
from kefu.visitors import staff_require
from org.models import User
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit

#: longest text value (characters)
TEXT_MAX = 500
#: values one write may carry at most
VALUES_MAX = 50


def definitions(applies_to: str | None = None) -> list[AttributeDefinition]:
    """The tenant's definitions (of contacts or conversations, or both), in display order."""
    rows = AttributeDefinition.objects.all()
    if applies_to is not None:
        rows = rows.filter(applies_to=applies_to)
    return list(rows)


def definition_payload(d: AttributeDefinition) -> dict[str, Any]:
    """``{"key", "name", "kind", "applies_to", "options": [text], "description"}``."""
    return {
        "key": d.key,
        "name": d.name,
        "kind": d.kind,
        "applies_to": d.applies_to,
        "options": d.choices,
        "description": d.description,
    }


def _bad(key: str, message: str) -> ServiceError:
    return ServiceError("invalid", message, field=f"attributes.{key}")


def value_clean(d: AttributeDefinition, value: object) -> Any:
    """``value`` as stored for definition ``d`` (None: remove). Numbers may come as numeric
    text, booleans as ``"true"``/``"false"`` (what a form or a query string sends). Raises
    ``ServiceError("invalid")`` with ``field`` ``attributes.<key>``."""
    if value is None or value == "":
        return None
    return _CLEANERS[d.kind](d, value)


def _text(d: AttributeDefinition, value: object) -> str | None:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise _bad(d.key, _("%(name)s must be a text.") % {"name": d.name})
    text = str(value).strip()
    if len(text) > TEXT_MAX:
        raise _bad(d.key, _("At most %(n)s characters.") % {"n": TEXT_MAX})
    return text or None


def _date(d: AttributeDefinition, value: object) -> str:
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise _bad(d.key, _("Use a date as YYYY-MM-DD.")) from None


def _boolean(d: AttributeDefinition, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise _bad(d.key, _("%(name)s must be true or false.") % {"name": d.name})


def _choice(d: AttributeDefinition, value: object) -> str:
    if not isinstance(value, str) or value not in d.choices:
        raise _bad(
            d.key,
            _("%(name)s must be one of: %(values)s.")
            % {"name": d.name, "values": ", ".join(d.choices)},
        )
    return value


def _number(d: AttributeDefinition, value: object) -> int | float:
    error = _bad(d.key, _("%(name)s must be a number.") % {"name": d.name})
    if isinstance(value, bool):
        raise error
    if isinstance(value, int | float):
        number: int | float = value
    elif isinstance(value, str) and len(value) <= 40:
        try:
            number = int(value)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                raise error from None
    else:
        raise error
    if isinstance(number, float) and not math.isfinite(number):
        raise error
    return number


_CLEANERS = {
    AttributeDefinition.Kind.TEXT: _text,
    AttributeDefinition.Kind.NUMBER: _number,
    AttributeDefinition.Kind.DATE: _date,
    AttributeDefinition.Kind.BOOLEAN: _boolean,
    AttributeDefinition.Kind.LIST: _choice,
}


def values_clean(applies_to: str, values: object) -> dict[str, Any]:
    """``values`` (``{key: value | null}``) checked against the definitions of ``applies_to``:
    the stored form of each (None: remove). Raises ``ServiceError("invalid")``: not an object,
    more than :data:`VALUES_MAX` entries, a key without a definition (``field``
    ``attributes.<key>``), a value of the wrong kind."""
    if not isinstance(values, dict) or len(values) > VALUES_MAX:
        raise ServiceError(
            "invalid",
            _("attributes is an object of at most %(n)d entries.") % {"n": VALUES_MAX},
            field="attributes",
        )
    by_key = {d.key: d for d in definitions(applies_to)}
    clean: dict[str, Any] = {}
    for key, value in values.items():
        d = by_key.get(key) if isinstance(key, str) else None
        if d is None:
            raise ServiceError(
                "invalid",
                _("There is no attribute %(key)s: an administrator defines it first.")
                % {"key": str(key)[:64]},
                field=f"attributes.{str(key)[:64]}",
            )
        clean[key] = value_clean(d, value)
    return clean


def values_apply(current: dict[str, Any] | None, clean: dict[str, Any]) -> dict[str, Any]:
    """``current`` with ``clean`` written over it (a None removes the key)."""
    out = dict(current or {})
    for key, value in clean.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def panel(applies_to: str, values: dict[str, Any] | None) -> list[dict[str, Any]]:
    """What the visitor panel shows: every definition of ``applies_to`` with its ``value``
    (null when unset): ``[{"key", "name", "kind", "applies_to", "options", "description",
    "value"}]``."""
    values = values or {}
    return [{**definition_payload(d), "value": values.get(d.key)} for d in definitions(applies_to)]


def _conversation_session(user: User, conversation_id: object) -> Session:
    """The session of a customer conversation ``user`` may see (an administrator, its agent,
    an agent of its workgroup, or a member of it); ``not_found`` otherwise."""
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
        raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
    session = Session.objects.filter(conversation_id=conversation_id).first()
    if session is None:
        raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
    allowed = (
        user.is_admin
        or session.agent_id == user.pk
        or Workgroup.agents.through.objects.filter(
            workgroup_id=session.workgroup_id, user_id=user.pk
        ).exists()
        or im_selectors.active_memberships(member_key=user.member_key)
        .filter(conversation_id=conversation_id)
        .exists()
    )
    if not allowed:
        raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
    return session


def conversation_attributes_get(*, user: User, conversation_id: object) -> list[dict[str, Any]]:
    """The conversation's attributes as the panel shows them (:func:`panel`). Who: as
    :func:`conversation_attributes_set`."""
    staff_require(user)
    session = _conversation_session(user, conversation_id)
    return panel(AttributeDefinition.AppliesTo.CONVERSATION, session.attributes)


def conversation_attributes_set(
    *, user: User, conversation_id: object, values: object
) -> dict[str, Any]:
    """Write conversation attributes. Who: an administrator, the conversation's agent, an agent
    of its workgroup or a member of it (``not_found`` for anyone else and other tenants).
    Returns the conversation's attributes; sends ``conversation.attributes`` (see the module)
    when they changed. Raises ``ServiceError("invalid")`` as :func:`values_clean`."""
    staff_require(user)
    clean = values_clean(AttributeDefinition.AppliesTo.CONVERSATION, values)
    with transaction.atomic():
        session = _conversation_session(user, conversation_id)
        session = Session.objects.select_for_update(of=("self",)).get(pk=session.pk)
        updated = values_apply(session.attributes, clean)
        if updated != session.attributes:
            session.attributes = updated
            session.save(update_fields=["attributes"])
            members = {
                k
                for k in im_selectors.active_member_keys(conversation_id=session.conversation_id)
                if k.startswith("u:")
            }
            agents = Workgroup.agents.through.objects.filter(
                workgroup_id=session.workgroup_id
            ).values_list("user_id", flat=True)
            publish_event_on_commit(
                {
                    "type": "conversation.attributes",
                    "conversation_id": session.conversation_id,
                    "attributes": updated,
                },
                sorted(members | {f"u:{a}" for a in agents}),
            )
    return updated


def attribute_filter_parse(value: object) -> tuple[str, str] | None:
    """``"key=value"`` (the ``attribute`` filter of the inbox's views, saved views, the export
    and the API) as ``(key, value)``; None for empty. Raises ``ServiceError("invalid")``
    (``field`` ``attribute``) for another shape or a key nobody defined."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or "=" not in value or len(value) > 600:
        raise ServiceError(
            "invalid", _("Filter attributes as key=value, e.g. plan=vip."), field="attribute"
        )
    key, _sep, wanted = value.partition("=")
    key = key.strip()
    if not AttributeDefinition.objects.filter(key=key).exists():
        raise ServiceError(
            "invalid",
            _("There is no attribute %(key)s: an administrator defines it first.")
            % {"key": key[:64]},
            field="attribute",
        )
    return key, wanted.strip()


def attribute_q(value: object, *, contact: str = "visitor__", conversation: str | None = "") -> Q:
    """A filter on sessions (or, with ``conversation=None`` and ``contact=""``, on visitors)
    whose contact or conversation attribute ``key`` holds ``value`` (``"key=value"``, see
    :func:`attribute_filter_parse`): the value is read as the attribute's kind (``plan=vip``,
    ``orders=3``, ``vip=true``, ``renewal=2026-01-31``) and compared exactly (JSON containment,
    so the index-free scan stays within the caller's other filters). An empty ``value``
    matches nothing set there. Raises ``ServiceError("invalid")``."""
    parsed = attribute_filter_parse(value)
    if parsed is None:
        return Q()
    key, wanted = parsed
    q = Q(pk__in=[])
    for d in AttributeDefinition.objects.filter(key=key):
        if d.applies_to == AttributeDefinition.AppliesTo.CONTACT:
            prefix = contact
        elif conversation is not None:
            prefix = conversation
        else:
            continue
        try:
            stored = value_clean(d, wanted)
        except ServiceError as exc:
            raise ServiceError("invalid", exc.message, field="attribute") from exc
        if stored is None:
            q |= ~Q(**{f"{prefix}attributes__has_key": key})
        else:
            q |= Q(**{f"{prefix}attributes__contains": {key: stored}})
    return q
