"""Re-encrypt every stored secret under the newest key of SECRETS_ENCRYPTION_KEYS.

Rotation: prepend the new key, deploy, run this command, then remove the old key."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from mission_control import crypto


class Command(BaseCommand):
    help = "Re-encrypt stored API keys and proxy passwords with the newest key."

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        for model in apps.get_models():
            names = [
                f.name
                for f in model._meta.concrete_fields
                if isinstance(f, crypto.EncryptedTextField)
            ]
            if not names:
                continue
            count = 0
            pks = list(model._default_manager.values_list("pk", flat=True))
            for start in range(0, len(pks), 500):
                with transaction.atomic():
                    rows = model._default_manager.select_for_update().filter(
                        pk__in=pks[start : start + 500]
                    )
                    for obj in rows:
                        # Reading decrypts with any key; saving encrypts with the newest.
                        updates = {n: getattr(obj, n) for n in names if getattr(obj, n)}
                        if updates:
                            model._default_manager.filter(pk=obj.pk).update(**updates)
                            count += 1
            self.stdout.write(f"{model._meta.label}: {count} row(s) re-encrypted")
            total += count
        self.stdout.write(self.style.SUCCESS(f"{total} row(s) re-encrypted"))
