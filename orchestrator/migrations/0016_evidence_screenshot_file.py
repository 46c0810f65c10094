"""Evidence screenshots leave the database: each base64 image becomes a file under
EVIDENCE_DIR and the row keeps its path (issue #21)."""

import base64
import binascii

from django.db import migrations, models


def to_files(apps, schema_editor):  # type: ignore[no-untyped-def]
    from mission_control import evidence_files

    ItemEvidence = apps.get_model("orchestrator", "ItemEvidence")
    rows = ItemEvidence.objects.exclude(screenshot_png_base64="").select_related("item")
    for ev in rows.iterator(chunk_size=200):
        try:
            png = base64.b64decode(ev.screenshot_png_base64, validate=True)
        except (binascii.Error, ValueError):
            png = b""
        relpath = evidence_files.save_png(ev.item.mission_id, ev.item_id, ev.attempt, png)
        ItemEvidence.objects.filter(pk=ev.pk).update(screenshot_file=relpath)


class Migration(migrations.Migration):
    dependencies = [("orchestrator", "0015_session_inspect_url")]

    operations = [
        migrations.AddField(
            model_name="itemevidence",
            name="screenshot_file",
            field=models.CharField(blank=True, default="", max_length=300),
        ),
        migrations.RunPython(to_files, migrations.RunPython.noop, elidable=True),
        migrations.RemoveField(model_name="itemevidence", name="screenshot_png_base64"),
    ]
