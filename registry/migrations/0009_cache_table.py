"""The database cache's table (mission_control.settings.CACHES when neither CACHE_URL
nor REDIS_URL is set): throttles and axes counters shared by every process."""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    # Idempotent; does nothing for non-database caches.
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("registry", "0008_api_token")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
