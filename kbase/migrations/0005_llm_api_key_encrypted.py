from django.db import migrations

import weiyu.fields


def encrypt_existing(apps, schema_editor):
    """Plain API keys written before the field was encrypted become Fernet tokens (raw SQL: the
    historical model would try to decrypt them)."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT id, api_key FROM kbase_llmprovider WHERE api_key <> ''")
        for pk, plain in cursor.fetchall():
            if plain.startswith(weiyu.fields.TOKEN_PREFIX):
                try:
                    weiyu.fields.decrypt(plain)
                    continue
                except weiyu.fields.FieldKeyError:
                    pass
            cursor.execute(
                "UPDATE kbase_llmprovider SET api_key = %s WHERE id = %s",
                [weiyu.fields.encrypt(plain), pk],
            )


def decrypt_existing(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT id, api_key FROM kbase_llmprovider WHERE api_key <> ''")
        for pk, token in cursor.fetchall():
            cursor.execute(
                "UPDATE kbase_llmprovider SET api_key = %s WHERE id = %s",
                [weiyu.fields.decrypt(token)[:300], pk],
            )


class Migration(migrations.Migration):
    dependencies = [
        ("kbase", "0004_question_normalized_again"),
    ]

    operations = [
        migrations.AlterField(
            model_name="llmprovider",
            name="api_key",
            field=weiyu.fields.EncryptedTextField(
                blank=True, help_text="Kept encrypted (WEIYU_FIELD_KEYS).", verbose_name="API key"
            ),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
    ]
