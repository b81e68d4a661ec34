import django.contrib.postgres.fields
from django.db import migrations, models


def pgvector(apps, schema_editor):
    """Install pgvector (in public, for every tenant) when the server offers it and we may;
    semantic search falls back to exact numpy search without it."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        if cursor.fetchone() is None:
            return
        cursor.execute("SAVEPOINT kbase_pgvector")
        try:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public")
        except Exception:  # no permission: keep going without it
            cursor.execute("ROLLBACK TO SAVEPOINT kbase_pgvector")
        else:
            cursor.execute("RELEASE SAVEPOINT kbase_pgvector")


class Migration(migrations.Migration):
    dependencies = [
        ("kbase", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="article",
            name="embedding",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.FloatField(), editable=False, null=True, size=None
            ),
        ),
        migrations.AddField(
            model_name="faqitem",
            name="embedding",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.FloatField(), editable=False, null=True, size=None
            ),
        ),
        migrations.RunPython(pgvector, migrations.RunPython.noop),
    ]
