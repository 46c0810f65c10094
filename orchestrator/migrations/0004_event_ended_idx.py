from django.db import migrations, models

from orchestrator.migration_ops import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("orchestrator", "0003_session_slots"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="missionevent",
            index=models.Index(
                condition=models.Q(
                    ("kind", "transition"), ("to_status__in", ["FINALIZADO", "ERRO"])
                ),
                fields=["-created_at"],
                include=("to_status",),
                name="event_ended_idx",
            ),
        ),
    ]
