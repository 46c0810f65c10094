"""A live session marked to close when its current job ends (issue #15 case 4)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orchestrator", "0016_evidence_screenshot_file"),
    ]

    operations = [
        migrations.AddField(
            model_name="browsersession",
            name="retire_reason",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
    ]
