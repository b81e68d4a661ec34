"""Ticket settings edited in the back office: categories and SLA policies with their targets per
priority, and removing tickets or notifications there.

Values arrive validated by the admin's model forms; these functions own the transaction. Saving a
policy does not re-time running clocks: a ticket takes a changed policy's targets when its
priority or workgroup changes next (:func:`tickets.services.clocks.sla_clocks_retarget`).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from kefu.models import Workgroup
from tickets.models import Category, Notification, SlaPolicy, SlaTarget, Ticket


@transaction.atomic
def category_save(*, category: Category) -> Category:
    """Create or rename a category (names are unique; the form checked that)."""
    category.save()
    return category


@transaction.atomic
def categories_delete(*, category_ids: Iterable[int]) -> int:
    """Delete categories; their tickets keep no category. Returns how many were deleted."""
    deleted, _per_model = Category.objects.filter(pk__in=list(category_ids)).delete()
    return deleted


@transaction.atomic
def sla_policy_save(
    *,
    policy: SlaPolicy,
    workgroups: Iterable[Workgroup] | None = None,
    targets: Iterable[SlaTarget] = (),
    deleted_targets: Iterable[SlaTarget] = (),
) -> SlaPolicy:
    """Create or change a policy in one transaction: its fields, the workgroups it serves (when
    ``workgroups`` is given; None leaves them), the targets to drop, then the targets to add or
    change (each attached to this policy)."""
    policy.save()
    if workgroups is not None:
        policy.workgroups.set(list(workgroups))
    SlaTarget.objects.filter(
        policy=policy, pk__in=[t.pk for t in deleted_targets if t.pk is not None]
    ).delete()
    for target in targets:
        target.policy = policy
        target.save()
    return policy


@transaction.atomic
def sla_policies_delete(*, policy_ids: Iterable[int]) -> int:
    """Delete policies with their targets; their tickets keep no policy (and their clocks keep
    the instants already computed). Returns how many policies were deleted."""
    ids = list(policy_ids)
    count = SlaPolicy.objects.filter(pk__in=ids).count()
    SlaPolicy.objects.filter(pk__in=ids).delete()
    return count


@transaction.atomic
def tickets_delete(*, ticket_ids: Iterable[int]) -> int:
    """Delete tickets with their comments, SLA clocks and notifications (back office only; the
    inbox closes or merges instead). Numbers are not reused. Returns how many tickets."""
    ids = list(ticket_ids)
    count = Ticket.objects.filter(pk__in=ids).count()
    Ticket.objects.filter(pk__in=ids).delete()
    return count


@transaction.atomic
def notifications_delete(*, notification_ids: Iterable[int]) -> int:
    """Delete notifications (back office clean-up). Returns how many."""
    deleted, _per_model = Notification.objects.filter(pk__in=list(notification_ids)).delete()
    return deleted
