"""The sensitive-word filter of customer conversations (KF-10), applied to what visitors and
agents send before it is stored (internal notes and team chats are not filtered).

The tenant's list is read from the database at most every :data:`TTL_S` seconds per process (and
at once after a change in this process), so the send path pays nothing when the list is empty and
one dictionary lookup otherwise.
"""

from __future__ import annotations

import re
import time

from django.db import connection
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils.translation import gettext as _

from kefu.models import SensitiveWord
from weiyu.errors import ServiceError

TTL_S = 10.0
_cache: dict[str, tuple[float, list[tuple[str, str]]]] = {}


def words() -> list[tuple[str, str]]:
    """``[(word, action)]`` of the current tenant, longest first."""
    schema = connection.schema_name
    hit = _cache.get(schema)
    now = time.monotonic()
    if hit is None or hit[0] < now:
        rows = sorted(SensitiveWord.objects.values_list("word", "action"), key=lambda r: -len(r[0]))
        hit = (now + TTL_S, rows)
        _cache[schema] = hit
    return hit[1]


@receiver([post_save, post_delete], sender=SensitiveWord)
def _changed(**_: object) -> None:
    _cache.pop(connection.schema_name, None)


def apply(content: object) -> object:
    """``content`` with masked words starred out; ``ServiceError("forbidden")`` when it holds a
    blocked word. Anything but a string is returned unchanged (the message service validates it).
    Matching ignores case."""
    if not isinstance(content, str) or not content:
        return content
    listed = words()
    if not listed:
        return content
    for word, action in listed:
        if word.lower() not in content.lower():
            continue
        if action == SensitiveWord.Action.BLOCK:
            raise ServiceError(
                "forbidden", _("Your message contains a word that is not allowed here.")
            )
        content = re.sub(re.escape(word), "*" * len(word), content, flags=re.IGNORECASE)
    return content
