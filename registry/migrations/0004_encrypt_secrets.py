"""Secrets at rest: API keys and proxy passwords become Fernet ciphertext.

The column changes become text (ciphertext is longer than the plaintext limit) and
every stored plaintext is encrypted. Raw SQL on purpose, so the data step does not
depend on the historical field class. Reversible: decrypts back to plaintext."""

from __future__ import annotations

from typing import Any

from django.db import migrations

import mission_control.crypto
from mission_control import crypto

COLUMNS = [
    ("registry_worker", "api_key"),
    ("registry_writer", "api_key"),
    ("registry_uploader", "api_key"),
    ("registry_proxy", "password"),
]


def _rewrite(schema_editor: Any, transform: Any) -> None:
    connection = schema_editor.connection
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table, column in COLUMNS:
            cursor.execute(f"SELECT id, {qn(column)} FROM {qn(table)} WHERE {qn(column)} <> ''")
            for pk, stored in cursor.fetchall():
                new = transform(stored)
                if new != stored:
                    cursor.execute(
                        f"UPDATE {qn(table)} SET {qn(column)} = %s WHERE id = %s", [new, pk]
                    )


def encrypt(apps: Any, schema_editor: Any) -> None:
    _rewrite(schema_editor, lambda v: v if crypto.is_encrypted(v) else crypto.encrypt(v))


def decrypt(apps: Any, schema_editor: Any) -> None:
    _rewrite(schema_editor, crypto.decrypt)


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0003_features"),
    ]

    operations = [
        # Also in 0003_features (generated there by a concurrent makemigrations); kept
        # here so this migration stands on its own: altering to the same field is a no-op.
        migrations.AlterField(
            model_name="proxy",
            name="password",
            field=mission_control.crypto.EncryptedTextField(blank=True, default="", max_length=255),
        ),
        migrations.AlterField(
            model_name="uploader",
            name="api_key",
            field=mission_control.crypto.EncryptedTextField(blank=True, default="", max_length=500),
        ),
        migrations.AlterField(
            model_name="worker",
            name="api_key",
            field=mission_control.crypto.EncryptedTextField(blank=True, default="", max_length=500),
        ),
        migrations.AlterField(
            model_name="writer",
            name="api_key",
            field=mission_control.crypto.EncryptedTextField(blank=True, default="", max_length=500),
        ),
        migrations.RunPython(encrypt, decrypt, elidable=False),
    ]
