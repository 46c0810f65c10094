"""WorkerManager, health: probe every worker and writer (and uploader) and record
what they answered on their rows (health status, latency, breaker)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from orchestrator.clients import breaker
from orchestrator.clients.base import ServiceError
from orchestrator.managers.base import (
    BaseManager,
)
from registry.config import Config
from registry.models import HealthStatus, Worker, Writer


class _HealthAnswer(Protocol):
    @property
    def status(self) -> str: ...


H = TypeVar("H", bound=_HealthAnswer)


class WorkerHealth(BaseManager):
    """Health and capacity of every worker and writer (`WorkerManager.check_health`)."""

    def check_health(self, now: dt.datetime, cfg: Config) -> int:
        """GET /health of every enabled worker and writer (probes when a breaker is open)."""
        checked = 0
        for worker in Worker.objects.filter(enabled=True):
            health = self._probe(worker, self.worker_client(worker, cfg).health, now, cfg)
            if health is not None:
                Worker.objects.filter(pk=worker.pk).update(
                    reported_active_sessions=health.active_sessions,
                    reported_max_sessions=health.max_sessions,
                    version=(health.version or "")[:50],
                    **({"providers": health.providers} if health.providers else {}),
                    **({"last_error": health.message[:500]} if health.message else {}),
                )
                checked += 1
        for writer in Writer.objects.filter(enabled=True):
            if self._probe(writer, self.writer_client(writer, cfg).health, now, cfg) is not None:
                checked += 1
        return checked

    def _probe(
        self, service: Worker | Writer, call: Callable[[], H], now: dt.datetime, cfg: Config
    ) -> H | None:
        """One /health call unless the service's breaker says wait; its answer (or
        failure) recorded. Returns the answer, None when skipped or failed."""
        if not breaker.allow_call(service, now):
            return None
        started = time.monotonic()
        try:
            health = call()
        except ServiceError as exc:
            self.service_failed(service, exc, now, cfg)
            return None
        latency = int((time.monotonic() - started) * 1000)
        status = HealthStatus.DEGRADED if health.status == "degraded" else HealthStatus.OK
        self._health_answered(service, now, latency, status)
        return health

    @staticmethod
    def _health_answered(
        service: Worker | Writer, now: dt.datetime, latency_ms: int, status: str
    ) -> None:
        """/health answered. That closes the breaker only when real calls have not been
        failing: a service whose /health is fine while its real endpoints fail must not
        have its failure count reset every tick (its breaker would never open)."""
        if service.consecutive_failures == 0 and service.circuit_open_until is None:
            breaker.record_success(service, now, latency_ms=latency_ms, health_status=status)
            return
        # Let the next real call through as the probe; its outcome decides.
        type(service)._default_manager.filter(pk=service.pk).update(
            health_status=HealthStatus.DEGRADED,
            last_seen_at=now,
            last_checked_at=now,
            last_latency_ms=latency_ms,
        )
