from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class OrchestratorConfig(AppConfig):
    name = "orchestrator"
    verbose_name = "Orquestrador"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from mission_control import extensions, pgtypes
        from orchestrator import (
            checks,  # noqa: F401  (registers system checks)
            etl_outbox,
            metrics,
            models,
            records,
            site_breaker,  # noqa: F401  (counts failed sessions per site)
            status,
            webhooks,  # noqa: F401  (subscribes to the event bus)
        )
        from orchestrator.clients import breaker

        connection_created.connect(pgtypes.install, dispatch_uid="pg-iso-timestamps")
        breaker.service_offline.connect(_publish_offline, dispatch_uid="breaker-offline")
        extensions.register("metrics", metrics.collect)
        extensions.register("orchestrator_fresh", status.heartbeat_fresh)
        extensions.register("mission_exists", _mission_exists)
        extensions.register("mission_records", records.mission_records)
        extensions.register(models.TRANSITION_HOOK, etl_outbox.record_transition)


def _publish_offline(sender: type, service: Any, **kwargs: Any) -> None:
    from orchestrator import events

    events.publish(
        f"{sender.__name__.lower()}.offline", service_id=service.pk, service_name=service.name
    )


def _mission_exists(mission_id: int) -> bool:
    from orchestrator.models import Mission

    return Mission.objects.filter(pk=mission_id).exists()
