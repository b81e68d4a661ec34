"""Drop tickets' business calendar tables: their rows live in org's since tickets 0003, and
nothing points at them any more (kefu 0018). Reversed, it recreates them and copies the rows
back, before kefu 0018 and tickets 0003 point the foreign keys at them again."""

from django.db import migrations

#: (org table, tickets table, columns), parents first
TABLES = [
    ("org_businesscalendar", "tickets_businesscalendar", "id, name, timezone"),
    ("org_businesshours", "tickets_businesshours", "id, calendar_id, weekday, opens, closes"),
    ("org_holiday", "tickets_holiday", "id, calendar_id, date, name"),
]


def backwards(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for source, target, columns in TABLES:
            cursor.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {source}")  # noqa: S608
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{target}', 'id'),"  # noqa: S608
                f" COALESCE((SELECT MAX(id) FROM {target}), 0) + 1, false)"
            )
        for _source, target, _columns in TABLES:
            model = target.removeprefix("tickets_")
            cursor.execute(
                "UPDATE django_content_type SET app_label = 'tickets'"
                " WHERE app_label = 'org' AND model = %s AND NOT EXISTS ("
                " SELECT 1 FROM django_content_type WHERE app_label = 'tickets' AND model = %s)",
                [model, model],
            )


class Migration(migrations.Migration):
    dependencies = [
        ("tickets", "0003_calendars_to_org"),
        ("kefu", "0018_calendar_in_org"),
    ]

    operations = [
        # runs last when reversed, once the tables exist again
        migrations.RunPython(migrations.RunPython.noop, backwards),
        migrations.DeleteModel(name="Holiday"),
        migrations.DeleteModel(name="BusinessHours"),
        migrations.DeleteModel(name="BusinessCalendar"),
    ]
