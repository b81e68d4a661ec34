"""Canned responses (KF-9): the shared ones kept by admins and each agent's own, inserted in the
inbox by typing ``/shortcut``. Refusals raise :class:`weiyu.errors.ServiceError`."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils.text import slugify
from django.utils.translation import gettext as _

from kefu import supervision
from kefu.models import CannedResponse, Workgroup
from org.models import User
from weiyu.errors import ServiceError


def visible_to(user: User) -> QuerySet[CannedResponse]:
    """The shared responses and the user's own. A shared response restricted to workgroups
    (``CannedResponse.workgroups``) is only for those workgroups' people — agents, lead,
    supervisors (:func:`kefu.supervision.workgroup_people_filter`); administrators and
    auditors see them all."""
    shared = Q(owner__isnull=True)
    if not supervision.sees_every_workgroup(user):
        mine = Workgroup.objects.filter(supervision.workgroup_people_filter(user)).values("pk")
        restricted = CannedResponse.workgroups.through.objects.values("cannedresponse_id")
        allowed = CannedResponse.workgroups.through.objects.filter(workgroup__in=mine).values(
            "cannedresponse_id"
        )
        shared &= ~Q(pk__in=restricted) | Q(pk__in=allowed)
    return CannedResponse.objects.filter(shared | Q(owner=user))


def canned_payload(item: CannedResponse) -> dict[str, Any]:
    """``{"id", "shortcut", "category", "title", "content", "shared"}`` (``shared``: kept in the
    back office for everyone, else the caller's own)."""
    return {
        "id": item.pk,
        "shortcut": item.shortcut,
        "category": item.category,
        "title": item.title,
        "content": item.content,
        "shared": item.owner_id is None,
    }


def canned_list(*, user: User, q: str = "") -> list[CannedResponse]:
    """What ``user`` may insert, personal ones first within a shortcut, filtered by ``q`` (a
    shortcut prefix or words of the title or text)."""
    qs = visible_to(user)
    q = q.strip().lstrip("/")
    if q:
        qs = qs.filter(Q(shortcut__istartswith=q) | Q(title__icontains=q) | Q(content__icontains=q))
    return list(qs.order_by("shortcut", "owner_id")[:50])


def _clean(*, shortcut: object, title: object, content: object, category: object) -> dict[str, str]:
    """Validated fields: title ≤ 100, content ≤ 5,000, category ≤ 64 characters; the shortcut
    slugified (letters, digits, ``-``; a leading ``/`` dropped) to ≤ 32."""
    fields = {}
    for name, raw, limit in (
        ("title", title, 100),
        ("content", content, 5000),
        ("category", category, 64),
    ):
        value = "" if raw is None else raw
        if not isinstance(value, str) or (name != "category" and not value.strip()):
            raise ServiceError("invalid", _("%(field)s is required.") % {"field": name}, field=name)
        if len(value.strip()) > limit:
            raise ServiceError(
                "invalid",
                _("%(field)s is longer than %(limit)d characters.")
                % {"field": name, "limit": limit},
                field=name,
            )
        fields[name] = value.strip()
    slug = (
        slugify(str(shortcut or "").lstrip("/"), allow_unicode=True)[:32]
        if isinstance(shortcut, str)
        else ""
    )
    if not slug:
        raise ServiceError("invalid", _("A shortcut needs letters or digits."), field="shortcut")
    fields["shortcut"] = slug
    return fields


def _taken(slug: str) -> ServiceError:
    return ServiceError(
        "conflict", _("You already have /%(shortcut)s.") % {"shortcut": slug}, field="shortcut"
    )


def canned_create(
    *, user: User, shortcut: object, title: object, content: object, category: object = ""
) -> CannedResponse:
    """A personal canned response. Errors: ``invalid`` (with ``field``), ``conflict`` when the
    user already has that shortcut."""
    fields = _clean(shortcut=shortcut, title=title, content=content, category=category)
    try:
        with transaction.atomic():
            return CannedResponse.objects.create(owner=user, **fields)
    except IntegrityError:
        raise _taken(fields["shortcut"]) from None


def canned_update(*, user: User, canned_id: object, changes: dict[str, Any]) -> CannedResponse:
    """Change one of the user's own responses; ``changes`` holds any of ``shortcut``,
    ``title``, ``content``, ``category`` (the others stay). Errors: ``not_found`` (not theirs:
    shared ones are kept in the back office), ``invalid``, ``conflict`` (shortcut taken)."""
    item = CannedResponse.objects.filter(
        pk=canned_id if isinstance(canned_id, int) else -1, owner=user
    ).first()
    if item is None:
        raise ServiceError("not_found", _("No such canned response."))
    merged = {
        name: changes.get(name, getattr(item, name))
        for name in ("shortcut", "title", "content", "category")
    }
    fields = _clean(**merged)
    for name, value in fields.items():
        setattr(item, name, value)
    try:
        with transaction.atomic():
            item.save(update_fields=list(fields))
    except IntegrityError:
        raise _taken(fields["shortcut"]) from None
    return item


def canned_delete(*, user: User, canned_id: object) -> None:
    """Delete one of the user's own responses (shared ones are kept in the back office).
    ``not_found`` otherwise."""
    deleted, _rows = CannedResponse.objects.filter(
        pk=canned_id if isinstance(canned_id, int) else -1, owner=user
    ).delete()
    if not deleted:
        raise ServiceError("not_found", _("No such canned response."))
