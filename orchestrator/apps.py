from __future__ import annotations

from typing import Any

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
        from orchestrator.clients import breaker

        breaker.service_offline.connect(_publish_offline, dispatch_uid="breaker-offline")


def _publish_offline(sender: type, service: Any, **kwargs: Any) -> None:
    from orchestrator import events

    events.publish(
        f"{sender.__name__.lower()}.offline", service_id=service.pk, service_name=service.name
    )
