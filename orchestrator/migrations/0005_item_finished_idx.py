from django.db import migrations, models

from orchestrator.migration_ops import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("orchestrator", "0004_event_ended_idx"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="missionitem",
            index=models.Index(
                condition=models.Q(("finished_at__isnull", False)),
                fields=["finished_at"],
                name="item_finished_idx",
            ),
        ),
    ]
