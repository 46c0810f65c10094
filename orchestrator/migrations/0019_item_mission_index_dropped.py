"""MissionItem.mission loses its own index: (mission, url) and (mission, status, id) start
with it, and every insert and status change of an item wrote it too.

Django's AlterField would drop and re-add the foreign key constraint, which validates
every item row under a lock; only the index is dropped here (CONCURRENTLY on
PostgreSQL: the item table is big and written all the time)."""

from typing import Any

import django.db.models.deletion
from django.db import migrations, models

COLUMN = "mission_id"


def _index(apps: Any, schema_editor: Any) -> tuple[str, str, str]:
    table = apps.get_model("orchestrator", "MissionItem")._meta.db_table
    name = schema_editor._create_index_name(table, [COLUMN], suffix="")
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    return schema_editor.quote_name(table), schema_editor.quote_name(name), concurrently


def drop_index(apps: Any, schema_editor: Any) -> None:
    _, name, concurrently = _index(apps, schema_editor)
    schema_editor.execute(f"DROP INDEX{concurrently} IF EXISTS {name}")


def create_index(apps: Any, schema_editor: Any) -> None:
    table, name, concurrently = _index(apps, schema_editor)
    schema_editor.execute(f"CREATE INDEX{concurrently} IF NOT EXISTS {name} ON {table} ({COLUMN})")


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("orchestrator", "0018_recurring_etl_run"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="missionitem",
                    name="mission",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="items",
                        to="orchestrator.mission",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_index, create_index)],
        ),
    ]
