"""Spare tenant schemas: copies of the template made ahead by a worker (docs/operations.md).

Copying the template (tenants/template.py) is ~560 DDL statements: 140-180 ms on a quiet machine,
seconds on a loaded one, and a sign-up waits for it. So a worker keeps
``settings.WEIYU_SPARE_SCHEMAS`` copies ready, named ``_spare_<hex>`` (never a tenant's name:
those start with a letter), and provisioning renames one (``ALTER SCHEMA … RENAME TO``, a
catalog update) instead; with none ready it copies the template as before.

A spare is only taken when it has exactly this code's migrations
(:func:`tenants.template.schemas_behind`); ``migrate_schemas`` drops the spares a deploy left
behind and copies new ones from the refreshed template (:func:`spares_fill`). Two provisionings
never take the same spare: each holds the spare's advisory lock until its transaction ends.
"""

from __future__ import annotations

import logging
import time
import uuid

from celery import shared_task
from django.conf import settings
from django.db import connection, transaction

from tenants import template

logger = logging.getLogger(__name__)

#: spare schema names: this prefix + 12 hex digits
SPARE_PREFIX = "_spare_"
# pg_advisory lock keys: (class, hashtext(spare name)) while a spare is taken or dropped, and
# FILL_LOCK_KEY while one process fills the pool
SPARE_LOCK_CLASS = 0x7779_7370  # "wysp"
FILL_LOCK_KEY = 0x7765_6979_7502  # "weiyu" + 2


def pool_size() -> int:
    """How many spares the pool keeps (``settings.WEIYU_SPARE_SCHEMAS``; 0 = no pool)."""
    return max(0, int(getattr(settings, "WEIYU_SPARE_SCHEMAS", 0) or 0))


def spare_schemas() -> list[str]:
    """The spare schemas that exist now, oldest name first (one catalog read)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s) ORDER BY nspname",
            [SPARE_PREFIX],
        )
        return [row[0] for row in cursor.fetchall()]


def _spare_lock_try(cursor, spare: str) -> bool:
    cursor.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", [SPARE_LOCK_CLASS, spare])
    return bool(cursor.fetchone()[0])


def spare_take(*, target: str) -> str | None:
    """Rename a current spare schema to ``target`` (which must not exist) and return the
    spare's old name, or None when no spare is ready (the pool is off or empty, or every spare
    is behind this code's migrations or held by another provisioning). Call inside
    ``transaction.atomic()``: a rollback gives the spare back to the pool. A few catalog reads
    and one ``ALTER SCHEMA``, whatever the schema's size."""
    if pool_size() == 0:
        return None
    quote = connection.ops.quote_name
    for spare in spare_schemas():
        with transaction.atomic(), connection.cursor() as cursor:
            if not _spare_lock_try(cursor, spare):
                continue  # another provisioning holds it
            # it may have been taken (and committed) between the listing and the lock
            cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [spare])
            if cursor.fetchone() is None or template.schemas_behind([spare]):
                continue
            cursor.execute(f"ALTER SCHEMA {quote(spare)} RENAME TO {quote(target)}")
            return spare
    return None


def spares_fill() -> dict[str, int]:
    """Bring the pool to :func:`pool_size` current spares: drop the spares that lack a migration
    of this code (or that the pool no longer wants), then copy the template until there are
    enough, each copy in its own transaction. Does nothing while another process fills the pool
    or ``migrate_schemas`` refreshes the template, or when the template cannot be copied
    (:func:`tenants.template.template_stale_reason`). Returns ``{"dropped": n, "made": n}``."""
    done = {"dropped": 0, "made": 0}
    source = template.template_schema()
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [FILL_LOCK_KEY])
        if not cursor.fetchone()[0]:
            return done
    try:
        spares = spare_schemas()
        behind = set(template.schemas_behind(spares)) if spares else set()
        current = [s for s in spares if s not in behind]
        surplus = current[pool_size() :] if source else current
        for spare in sorted(behind) + surplus:
            with transaction.atomic(), connection.cursor() as cursor:
                if _spare_lock_try(cursor, spare):
                    cursor.execute(f"DROP SCHEMA IF EXISTS {quote(spare)} CASCADE")
                    done["dropped"] += 1
        missing = pool_size() - (len(current) - len(surplus)) if source else 0
        for _n in range(missing):
            started = time.monotonic()
            with transaction.atomic():
                if not template.template_lock_try():
                    break  # a deploy is refreshing the template: it fills the pool after
                if (reason := template.template_stale_reason()) is not None:
                    logger.warning("spare schemas: not copying the template: %s", reason)
                    break
                spare = f"{SPARE_PREFIX}{uuid.uuid4().hex[:12]}"
                template.schema_clone(source=source, target=spare)
            done["made"] += 1
            logger.info(
                "spare schema %s copied in %.0f ms", spare, (time.monotonic() - started) * 1000
            )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [FILL_LOCK_KEY])
    return done


def spares_fill_later() -> None:
    """Have a worker refill the pool once the current transaction commits (nothing when the pool
    is off)."""
    if pool_size():
        transaction.on_commit(spares_fill_task.delay)


# Defined here so tenants.services enqueues it without importing tenants.tasks (which
# re-exports it under this name).
@shared_task(name="tenants.tasks.spares_fill_task")
def spares_fill_task() -> dict[str, int]:
    """Refill the spare schema pool (:func:`spares_fill`): after a spare was taken, after a
    deploy, and on beat (``tenants-spares-fill``). Returns ``{"dropped": n, "made": n}``."""
    return spares_fill()
