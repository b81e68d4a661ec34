"""What a schema is made of, read from PostgreSQL's catalogs, for comparing two schemas.

Every name of the schema itself is replaced by ``<s>``, so a migrated and a cloned schema compare
equal exactly when they have the same relations, columns, indexes, constraints, sequences (with
their owners and positions), triggers, functions, types, migrations and rows.
"""

from __future__ import annotations

from typing import Any

from django.db import connection

RELATIONS = """
SELECT c.relname, c.relkind, c.relpersistence, obj_description(c.oid, 'pg_class')
FROM pg_class c WHERE c.relnamespace = %(ns)s::oid"""

COLUMNS = """
SELECT c.relname, row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum), a.attname,
       format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
       a.attidentity, a.attgenerated, a.attcollation, col_description(c.oid, a.attnum)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = %(ns)s::oid AND a.attnum > 0 AND NOT a.attisdropped"""

INDEXES = """
SELECT ic.relname, pg_get_indexdef(i.indexrelid), i.indisprimary, i.indisunique, i.indisvalid
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE ic.relnamespace = %(ns)s::oid"""

CONSTRAINTS = """
SELECT t.relname, co.conname, co.contype, pg_get_constraintdef(co.oid), co.condeferrable,
       co.condeferred, co.convalidated, r.relnamespace = co.connamespace, ic.relname
FROM pg_constraint co JOIN pg_class t ON t.oid = co.conrelid
LEFT JOIN pg_class r ON r.oid = co.confrelid LEFT JOIN pg_class ic ON ic.oid = co.conindid
WHERE co.connamespace = %(ns)s::oid"""

SEQUENCES = """
SELECT s.relname, format_type(q.seqtypid, NULL), q.seqstart, q.seqincrement, q.seqmax, q.seqmin,
       q.seqcache, q.seqcycle, t.relname, a.attname, d.deptype
FROM pg_sequence q JOIN pg_class s ON s.oid = q.seqrelid
LEFT JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass
     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
LEFT JOIN pg_class t ON t.oid = d.refobjid
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE s.relnamespace = %(ns)s::oid"""

TRIGGERS = """
SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = %(ns)s::oid AND NOT t.tgisinternal"""

FUNCTIONS = (
    "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p WHERE p.pronamespace = %(ns)s::oid"
)

TYPES = "SELECT t.typname, t.typtype FROM pg_type t WHERE t.typnamespace = %(ns)s::oid"


def schema_snapshot(schema: str, *, skip_rows: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The parts of ``schema``, each a sorted list of tuples; ``rows`` maps each table (except
    ``skip_rows``) to its sorted rows as text."""
    quoted = connection.ops.quote_name(schema)

    def normalise(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return value.replace(f"{quoted}.", "<s>.").replace(f"{schema}.", "<s>.")

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('search_path')")
        (search_path,) = cursor.fetchone()
        # names outside the search path come out qualified: a reference to another schema shows
        cursor.execute("SELECT set_config('search_path', '', false)")
        try:
            cursor.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", [schema])
            (ns,) = cursor.fetchone()

            def rows(sql: str) -> list[tuple]:
                cursor.execute(sql, {"ns": ns})
                return sorted(tuple(normalise(v) for v in row) for row in cursor.fetchall())

            snapshot: dict[str, Any] = {
                "relations": rows(RELATIONS),
                "columns": rows(COLUMNS),
                "indexes": rows(INDEXES),
                "constraints": rows(CONSTRAINTS),
                "triggers": rows(TRIGGERS),
                "functions": rows(FUNCTIONS),
                "types": rows(TYPES),
            }
            sequences = []
            for row in rows(SEQUENCES):
                cursor.execute(f'SELECT last_value, is_called FROM {quoted}."{row[0]}"')  # noqa: S608
                sequences.append((*row, *cursor.fetchone()))
            snapshot["sequences"] = sequences
            cursor.execute(f"SELECT app, name FROM {quoted}.django_migrations")  # noqa: S608
            snapshot["migrations"] = sorted(cursor.fetchall())
            snapshot["rows"] = {}
            cursor.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = %s AND relkind = 'r'", [ns]
            )
            for (table,) in sorted(cursor.fetchall()):
                if table in skip_rows or table == "django_migrations":
                    continue
                cursor.execute(f'SELECT t::text FROM {quoted}."{table}" t')  # noqa: S608
                snapshot["rows"][table] = sorted(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("SELECT set_config('search_path', %s, false)", [search_path])
    return snapshot
