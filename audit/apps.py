from __future__ import annotations

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Auditoria"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from audit import checks, signals

        signals.connect()
        checks.register()
