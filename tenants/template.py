"""The template schema new tenants are cloned from (DESIGN.md §7, docs/operations.md).

Running every migration for each new tenant takes about a second here and grows with every
migration we add; copying a schema that is already migrated takes a fraction of that. The template
(``settings.TENANT_TEMPLATE_SCHEMA``, ``_tenant_template`` by default) is never a tenant: it has
no ``Tenant`` row and no domain, and its name cannot be given to one (tenant schemas start with a
letter). ``migrate_schemas`` creates and migrates it after the tenants (see
``tenants/management/commands/migrate_schemas.py``), so a deploy refreshes it.

django-tenants ships a ``clone_schema`` SQL function (``TENANT_BASE_SCHEMA``), but its copy is not
the same as a migrated schema: it renames unique constraints (``…_key`` instead of Django's
names, which later ``RemoveConstraint`` migrations drop by name) and turns integer identity
sequences into bigint ones; it also fakes the migrations the template lacks. ``schema_clone`` below
copies what our migrations make, keeps every name, and refuses what it does not know how to copy
(views, functions, triggers, own types, partitions, row security), in which case provisioning
migrates instead; ``tests/tenants/test_template.py`` compares a clone with a migrated schema.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.migrations.loader import MigrationLoader

logger = logging.getLogger(__name__)

# pg_advisory_lock key: shared while a tenant is cloned from the template, exclusive while
# migrate_schemas refreshes it, so a clone never copies a half-migrated template.
TEMPLATE_LOCK_KEY = 0x7765_6979_7501  # "weiyu" + 1


def template_schema() -> str | None:
    """The template's schema name, or None when cloning is switched off (setting empty)."""
    return getattr(settings, "TENANT_TEMPLATE_SCHEMA", None) or None


@functools.cache
def _code_migrations() -> frozenset[tuple[str, str]]:
    """The ``(app, name)`` rows a schema migrated by this code has in ``django_migrations``.

    A squashed migration records the migrations it replaces, so those stand for it.
    """
    loader = MigrationLoader(None, ignore_no_migrations=True)
    keys: set[tuple[str, str]] = set()
    for key, migration in loader.graph.nodes.items():
        keys.update(migration.replaces or [key])
    return frozenset(keys)


_UNSUPPORTED_SQL = """
SELECT 'relation ' || c.relname || ' (relkind ' || c.relkind::text || ')' FROM pg_class c
 WHERE c.relnamespace = %(ns)s::oid AND c.relkind NOT IN ('r', 'S', 'i')
UNION ALL SELECT 'row security on ' || c.relname FROM pg_class c
 WHERE c.relnamespace = %(ns)s::oid AND (c.relrowsecurity OR c.relispartition)
UNION ALL SELECT 'inheritance of ' || c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE c.relnamespace = %(ns)s::oid
UNION ALL SELECT 'function ' || p.proname FROM pg_proc p WHERE p.pronamespace = %(ns)s::oid
UNION ALL SELECT 'trigger ' || t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = %(ns)s::oid AND NOT t.tgisinternal
UNION ALL SELECT 'type ' || t.typname FROM pg_type t
 WHERE t.typnamespace = %(ns)s::oid AND t.typtype IN ('e', 'd', 'r', 'm')
UNION ALL SELECT 'constraint ' || co.conname FROM pg_constraint co
 WHERE co.connamespace = %(ns)s::oid AND (co.contype NOT IN ('p', 'u', 'f', 'c', 'x') OR co.conrelid = 0)
UNION ALL SELECT 'rule ' || r.rulename FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
 WHERE c.relnamespace = %(ns)s::oid
UNION ALL SELECT 'extended statistics ' || s.stxname FROM pg_statistic_ext s
 WHERE s.stxnamespace = %(ns)s::oid
"""


def _namespace_oid(cursor, schema: str) -> int | None:
    cursor.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", [schema])
    row = cursor.fetchone()
    return row[0] if row else None


def template_stale_reason() -> str | None:  # noqa: PLR0911 - one return per reason
    """Why the template cannot be cloned right now, or None when it can.

    The template can be cloned when it exists, its ``django_migrations`` rows are exactly this
    code's migration graph, and it holds nothing ``schema_clone`` does not copy. Reads only.
    """
    schema = template_schema()
    if schema is None:
        return "no template schema is configured (TENANT_TEMPLATE_SCHEMA is empty)"
    with connection.cursor() as cursor:
        ns = _namespace_oid(cursor, schema)
        if ns is None:
            return f"the template schema {schema!r} does not exist (migrate_schemas creates it)"
        cursor.execute(
            "SELECT 1 FROM pg_class WHERE relnamespace = %s AND relname = 'django_migrations'",
            [ns],
        )
        if cursor.fetchone() is None:
            return f"the template schema {schema!r} has no django_migrations table"
        table = f"{connection.ops.quote_name(schema)}.django_migrations"
        cursor.execute(f"SELECT app, name FROM {table}")  # noqa: S608 - quoted setting
        applied = {(app, name) for app, name in cursor.fetchall()}
        cursor.execute(_UNSUPPORTED_SQL, {"ns": ns})
        unsupported = [row[0] for row in cursor.fetchall()]
    expected = _code_migrations()
    if missing := sorted(expected - applied):
        return (
            f"the template schema {schema!r} lacks {len(missing)} migration(s) of this code "
            f"(first {missing[0][0]}.{missing[0][1]}); migrate_schemas refreshes it"
        )
    if extra := sorted(applied - expected):
        return (
            f"the template schema {schema!r} has {len(extra)} migration(s) this code does not "
            f"know (first {extra[0][0]}.{extra[0][1]}): it was migrated by other code"
        )
    if unsupported:
        return (
            f"the template schema {schema!r} holds objects the clone does not copy: "
            + ", ".join(sorted(unsupported)[:5])
        )
    return None


#: schemas read per statement by :func:`schemas_behind`
BEHIND_BATCH = 200


def schemas_behind(schemas: list[str]) -> list[str]:
    """The schemas of ``schemas`` (in their order) that lack a migration of this code: no
    ``django_migrations`` table, or a row of :func:`_code_migrations` missing. Reads only, in
    one statement per :data:`BEHIND_BATCH` schemas (about 0.1 ms a schema here), so a no-op
    ``migrate_schemas`` over 1,000 tenants skips them in a second instead of running Django's
    ``migrate`` (and its ``post_migrate`` work) in each."""
    expected = _code_migrations()
    behind: list[str] = []
    with connection.cursor() as cursor:
        for start in range(0, len(schemas), BEHIND_BATCH):
            batch = schemas[start : start + BEHIND_BATCH]
            cursor.execute(
                "SELECT n.nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid "
                "WHERE c.relname = 'django_migrations' AND n.nspname = ANY(%s)",
                [batch],
            )
            with_table = {row[0] for row in cursor.fetchall()}
            quote = connection.ops.quote_name
            selects = [
                f"SELECT %s, app, name FROM {quote(schema)}.django_migrations"  # noqa: S608 - quoted
                for schema in batch
                if schema in with_table
            ]
            applied: dict[str, set[tuple[str, str]]] = {schema: set() for schema in batch}
            if selects:
                params = [schema for schema in batch if schema in with_table]
                cursor.execute(" UNION ALL ".join(selects), params)
                for schema, app, name in cursor.fetchall():
                    applied[schema].add((app, name))
            behind.extend(s for s in batch if s not in with_table or expected - applied[s])
    return behind


def template_lock_try() -> bool:
    """Take the template's lock in shared mode until the current transaction ends.

    Returns False at once (nothing taken) while ``migrate_schemas`` refreshes the template; the
    caller then migrates instead of waiting for the deploy. Call inside ``transaction.atomic()``.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock_shared(%s)", [TEMPLATE_LOCK_KEY])
        return bool(cursor.fetchone()[0])


@contextmanager
def template_refresh_lock() -> Iterator[None]:
    """Hold the template's lock exclusively (waiting for clones in progress) for the block.

    The lock lives on a connection of its own because migrating closes the default one.
    """
    lock_connection = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with lock_connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [TEMPLATE_LOCK_KEY])
        try:
            yield
        finally:
            with lock_connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [TEMPLATE_LOCK_KEY])
    finally:
        lock_connection.close()


_COLUMNS_SQL = """
SELECT a.attrelid, quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
       CASE WHEN a.attcollation <> t.typcollation
            THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END,
       quote_nullable(col_description(a.attrelid, a.attnum))
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
WHERE c.relnamespace = %s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

_SEQUENCES_SQL = """
SELECT quote_ident(s.relname), format_type(q.seqtypid, NULL), q.seqstart, q.seqincrement,
       q.seqmin, q.seqmax, q.seqcache, q.seqcycle, d.deptype, d.refobjid,
       quote_ident(a.attname)
FROM pg_sequence q
JOIN pg_class s ON s.oid = q.seqrelid
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE s.relnamespace = %s
ORDER BY s.oid
"""

_CONSTRAINTS_SQL = """
SELECT co.conrelid, quote_ident(co.conname), pg_get_constraintdef(co.oid)
FROM pg_constraint co
WHERE co.connamespace = %s AND co.conrelid <> 0
ORDER BY CASE co.contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 WHEN 'x' THEN 2 WHEN 'c' THEN 3 ELSE 4 END,
         co.oid
"""

_INDEXES_SQL = """
SELECT quote_ident(ic.relname), i.indrelid, i.indisunique, pg_get_indexdef(i.indexrelid)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE ic.relnamespace = %s AND NOT EXISTS (
    SELECT 1 FROM pg_constraint co
    WHERE co.conindid = i.indexrelid AND co.conrelid = i.indrelid AND co.contype IN ('p', 'u', 'x'))
ORDER BY ic.oid
"""


def _sequence_options(row: tuple) -> str:
    """CREATE SEQUENCE options from (start, increment, min, max, cache, cycle)."""
    start, increment, minimum, maximum, cache, cycle = row
    return (
        f"START WITH {start} INCREMENT BY {increment} MINVALUE {minimum} MAXVALUE {maximum} "
        f"CACHE {cache} {'CYCLE' if cycle else 'NO CYCLE'}"
    )


def _clone_script(cursor, *, source: str) -> list[str]:  # noqa: PLR0912, PLR0915 - one ordered pass over the catalog reads best whole
    """The statements that rebuild ``source`` in the schema they run in (search_path = target).

    Must be called with search_path = source only: the catalog functions then print names of the
    source's own objects unqualified (so they resolve in the target) and everything else
    qualified (``public.tenants_tenant`` stays a reference to the public schema).
    """
    quote = connection.ops.quote_name
    ns = _namespace_oid(cursor, source)
    cursor.execute("SELECT quote_ident(%s)", [source])
    (source_ident,) = cursor.fetchone()  # spelt as the catalog functions spell it
    cursor.execute(
        "SELECT oid, quote_ident(relname), quote_nullable(obj_description(oid, 'pg_class')) "
        "FROM pg_class WHERE relnamespace = %s AND relkind = 'r' ORDER BY oid",
        [ns],
    )
    tables = {oid: (name, comment) for oid, name, comment in cursor.fetchall()}
    cursor.execute(_COLUMNS_SQL, [ns])
    columns: dict[int, list[tuple]] = {oid: [] for oid in tables}
    for row in cursor.fetchall():
        columns[row[0]].append(row[1:])
    cursor.execute(_SEQUENCES_SQL, [ns])
    sequences = cursor.fetchall()
    positions = []
    if sequences:
        cursor.execute(
            " UNION ALL ".join(
                f"SELECT last_value, is_called FROM {quote(source)}.{row[0]}"  # noqa: S608 - quoted catalog names
                for row in sequences
            )
        )
        positions = cursor.fetchall()
    cursor.execute(_CONSTRAINTS_SQL, [ns])
    constraints = cursor.fetchall()
    cursor.execute(_INDEXES_SQL, [ns])
    indexes = cursor.fetchall()

    identity = {}  # (table oid, quoted column) -> (sequence name, options)
    script = []
    after = []
    for name, type_, start, inc, low, high, cache, cycle, deptype, table, column in sequences:
        options = _sequence_options((start, inc, low, high, cache, cycle))
        if deptype == "i":
            identity[(table, column)] = (name, options)
            continue
        script.append(f"CREATE SEQUENCE {name} AS {type_} {options}")
        if deptype == "a":
            after.append(f"ALTER SEQUENCE {name} OWNED BY {tables[table][0]}.{column}")

    for oid, (table, comment) in tables.items():
        definitions = []
        copied = []
        for column, type_, not_null, default, ident, generated, collation, note in columns[oid]:
            definition = f"{column} {type_}"
            if collation:
                definition += f" COLLATE {collation}"
            if generated == "s":
                definition += f" GENERATED ALWAYS AS ({default}) STORED"
            else:
                copied.append(column)
                if default is not None:
                    definition += f" DEFAULT {default}"
            if ident:
                sequence, options = identity.pop((oid, column))
                kind = "ALWAYS" if ident == "a" else "BY DEFAULT"
                definition += f" GENERATED {kind} AS IDENTITY (SEQUENCE NAME {sequence} {options})"
            if not_null:
                definition += " NOT NULL"
            definitions.append(definition)
            if note != "NULL":
                after.append(f"COMMENT ON COLUMN {table}.{column} IS {note}")
        script.append(f"CREATE TABLE {table} ({', '.join(definitions)})")
        if comment != "NULL":
            after.append(f"COMMENT ON TABLE {table} IS {comment}")
        if copied:
            names = ", ".join(copied)
            script.append(
                f"INSERT INTO {table} ({names}) OVERRIDING SYSTEM VALUE "  # noqa: S608 - quoted catalog names
                f"SELECT {names} FROM {quote(source)}.{table}"
            )
    if identity:
        raise RuntimeError(f"identity sequences without their column: {sorted(identity)}")

    for (name, *_options), (last_value, is_called) in zip(sequences, positions, strict=True):
        literal = name.replace("'", "''")
        script.append(
            f"SELECT setval('{literal}', {last_value}, {'true' if is_called else 'false'})"
        )
    for table, name, definition in constraints:
        script.append(f"ALTER TABLE {tables[table][0]} ADD CONSTRAINT {name} {definition}")
    for name, _table, unique, definition in indexes:
        # pg_get_indexdef always qualifies the table; anything else than the expected head would
        # create the index in the source schema, so refuse rather than guess
        head = f"CREATE {'UNIQUE ' if unique else ''}INDEX {name} ON "
        if not definition.startswith(f"{head}{source_ident}."):
            raise RuntimeError(f"unexpected index definition: {definition}")
        script.append(head + definition[len(head) + len(source_ident) + 1 :])
    return script + after


def schema_clone(*, source: str, target: str) -> None:
    """Create schema ``target`` as a copy of ``source``.

    Copies tables and their columns (types, collations, defaults, identity with their sequence
    names and options, generated columns), every row (``django_migrations``, content types,
    permissions and whatever data migrations inserted), sequences with their current values,
    constraints (primary, unique, check, exclusion, foreign keys pointing into ``target``),
    indexes and comments. Raises ``RuntimeError`` for objects it does not copy (see
    ``template_stale_reason``) and ``django.db.DatabaseError`` if ``target`` exists.

    Runs in a savepoint of the caller's transaction: on any error nothing is left behind and the
    connection's ``search_path`` is as before.
    """
    quote = connection.ops.quote_name
    with transaction.atomic(), connection.cursor() as cursor:
        ns = _namespace_oid(cursor, source)
        if ns is None:
            raise RuntimeError(f"schema {source!r} does not exist")
        cursor.execute(_UNSUPPORTED_SQL, {"ns": ns})
        if unsupported := sorted(row[0] for row in cursor.fetchall()):
            raise RuntimeError(f"{source!r} holds objects the clone does not copy: {unsupported}")
        cursor.execute("SELECT current_setting('search_path')")
        (search_path,) = cursor.fetchone()
        cursor.execute("SELECT set_config('search_path', %s, false)", [quote(source)])
        script = _clone_script(cursor, source=source)
        cursor.execute(f"CREATE SCHEMA {quote(target)}")
        cursor.execute("SELECT set_config('search_path', %s, false)", [quote(target)])
        cursor.execute(";\n".join(script))
        cursor.execute("SELECT set_config('search_path', %s, false)", [search_path])
