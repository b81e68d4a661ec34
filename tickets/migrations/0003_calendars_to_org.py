"""Business calendars move to the org app (they are the organisation's opening hours, which
workgroups use too): copy the rows into org's tables keeping their ids, move the content types
(so permissions and admin history follow), then point SLA policies at org.BusinessCalendar.

Tickets migrations run only in tenant schemas, but the copy checks that both tables exist in the
current schema anyway, so running it anywhere else does nothing. tickets 0004 drops the old
tables once kefu's work hours point at org too (kefu 0018); reversing 0004 copies the rows back.
"""

import django.db.models.deletion
from django.db import migrations, models

#: (old table, new table, columns), parents first
TABLES = [
    ("tickets_businesscalendar", "org_businesscalendar", "id, name, timezone"),
    ("tickets_businesshours", "org_businesshours", "id, calendar_id, weekday, opens, closes"),
    ("tickets_holiday", "org_holiday", "id, calendar_id, date, name"),
]
MODELS = ("businesscalendar", "businesshours", "holiday")


def _exists(cursor, table):
    cursor.execute(
        "SELECT 1 FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_name = %s",
        [table],
    )
    return cursor.fetchone() is not None


def forwards(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        if not all(_exists(cursor, table) for pair in TABLES for table in pair[:2]):
            return
        # org's tables hold rows only when these migrations were reversed and are applied again
        # (reversing tickets 0004 copies the rows back); tickets' rows are the ones in use then
        for _source, target, _columns in reversed(TABLES):
            cursor.execute(f"DELETE FROM {target}")  # noqa: S608
        for source, target, columns in TABLES:
            cursor.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {source}")  # noqa: S608
            # the next calendar added in the back office must not collide with a copied id
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{target}', 'id'),"  # noqa: S608
                f" COALESCE((SELECT MAX(id) FROM {target}), 0) + 1, false)"
            )
        # keep permissions and admin log entries: the content type changes app, not id
        for model in MODELS:
            cursor.execute(
                "UPDATE django_content_type SET app_label = 'org'"
                " WHERE app_label = 'tickets' AND model = %s AND NOT EXISTS ("
                " SELECT 1 FROM django_content_type WHERE app_label = 'org' AND model = %s)",
                [model, model],
            )


class Migration(migrations.Migration):
    dependencies = [
        ("org", "0004_business_calendars"),
        ("tickets", "0002_comment_emailed_at"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(forwards, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="slapolicy",
            name="calendar",
            field=models.ForeignKey(
                blank=True,
                help_text="Empty: targets count around the clock.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                to="org.businesscalendar",
                verbose_name="business calendar",
            ),
        ),
    ]
