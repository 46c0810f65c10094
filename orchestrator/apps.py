from __future__ import annotations

from django.apps import AppConfig


class OrchestratorConfig(AppConfig):
    name = "orchestrator"
    verbose_name = "Orquestrador"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from orchestrator import (
            checks,  # noqa: F401  (registers system checks)
            site_breaker,  # noqa: F401  (counts failed sessions per site)
            webhooks,  # noqa: F401  (subscribes to the event bus)
        )
