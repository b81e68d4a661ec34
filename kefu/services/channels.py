"""Widget channels made from the back office's getting-started page (:mod:`kefu.onboarding`)."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _

from kefu.models import Channel, Workgroup
from kefu.services.agents import agent_state_ensure
from org.models import User
from tenants import quotas
from weiyu.errors import ServiceError

#: longest channel name (``Channel.name``)
NAME_MAX = 100


def channel_start(*, name: str, user: User) -> Channel:
    """A first widget channel in one step: a human-only channel called ``name`` served by the
    tenant's first workgroup, which is created (named "Support", with ``user`` as its agent and
    lead) when the tenant has none; ``user`` joins an existing first workgroup as well, so a new
    company's administrator answers its first visitors from the inbox.

    Raises ``ServiceError("invalid", field="name")`` for an empty name or one over
    :data:`NAME_MAX` characters, ``ServiceError("forbidden")`` when ``user`` is not an agent or
    administrator (role), ``ServiceError("quota_exceeded", field="widget_channels")`` when the
    plan's widget channels are used up (:mod:`tenants.quotas`).
    """
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise ServiceError(
            "invalid",
            _("A channel needs a name of at most %(limit)d characters.") % {"limit": NAME_MAX},
            field="name",
        )
    if not user.is_agent:
        raise ServiceError("forbidden", _("Only agents and administrators can serve a channel."))
    quotas.check_total("widget_channels")
    with transaction.atomic():
        workgroup = Workgroup.objects.order_by("id").first()
        if workgroup is None:
            workgroup = Workgroup.objects.create(name=_("Support"), lead=user)
        workgroup.agents.add(user)
        agent_state_ensure(user_id=user.pk)
        return Channel.objects.create(name=name, workgroup=workgroup, title=name)
