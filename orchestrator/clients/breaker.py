"""A circuit breaker kept on the service's own row (any `registry.models.Service`
subclass: Worker, Writer, Uploader), so every process shares it.

- closed: calls flow; each infrastructure failure counts, each success resets.
- open (`circuit_open_until > now`): no calls; the service is offline.
- half-open (`circuit_open_until <= now` after failures): one probe may go; its
  success closes the circuit, its failure opens it again for `open_s`.

What counts as a failure: only faults of the service itself (unreachable, timeouts,
5xx, 429, refusing our key, garbage answers) — `ServiceError.infrastructure`. A 4xx
about the request (422, 409 conflicts, 413, 404) or a 502 `provider_error` means the
service is up and answered: callers record a success (or nothing) for those, never a
failure. Counting them would take a healthy service offline because of one bad
mission.

Every write is a single conditional `UPDATE` (counters with `F()`), so concurrent
ticks in several processes never lose a count; the instance is refreshed after.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.dispatch import Signal

from mission_control.logging import hide
from registry.models import HealthStatus, Service

# Sent once when a service's breaker opens; the engine relays it to its event bus
# (`orchestrator.apps`), so the clients below the engine never import it.
service_offline = Signal()

LAST_ERROR_LIMIT = 2000
_BREAKER_FIELDS = [
    "consecutive_failures",
    "health_status",
    "circuit_open_until",
    "last_error",
    "last_seen_at",
    "last_checked_at",
    "last_latency_ms",
]


@dataclass(frozen=True)
class FailureRecord:
    consecutive_failures: int
    # The circuit is open after this failure.
    opened: bool
    # This failure is the one that crossed the threshold (emit "service offline" once).
    just_opened: bool


def _manager(service: Service) -> models.Manager[Service]:
    return type(service)._default_manager


def allow_call(service: Service, now: dt.datetime, *, probe_s: float | None = None) -> bool:
    """May we call `service` now? Closed, or open with its wait over (a probe).

    With `probe_s`, a half-open circuit admits one probe across all processes: the
    caller that moves `circuit_open_until` forward by `probe_s` wins; the others see
    the circuit open until the probe's result is recorded or `probe_s` passes.
    """
    until = service.circuit_open_until
    if until is None:
        return True
    if until > now:
        return False
    if probe_s is None:
        return True
    won = (
        _manager(service)
        .filter(pk=service.pk, circuit_open_until=until)
        .update(circuit_open_until=now + dt.timedelta(seconds=probe_s))
    )
    service.refresh_from_db(fields=["circuit_open_until"])
    return bool(won)


def record_success(
    service: Service,
    now: dt.datetime,
    latency_ms: int | None = None,
    *,
    health_status: str = HealthStatus.OK,
) -> None:
    """The service answered: close the circuit and reset the failure count.

    `health_status` may be `degraded` when the service says so on /health.
    """
    key = (service._meta.label, service.pk)
    if latency_ms is None and _already_recorded(service, key, now, health_status):
        return
    values: dict[str, object] = {
        "consecutive_failures": 0,
        "health_status": health_status,
        "circuit_open_until": None,
        "last_seen_at": now,
        "last_checked_at": now,
    }
    if latency_ms is not None:
        values["last_latency_ms"] = max(0, int(latency_ms))
    _manager(service).filter(pk=service.pk).update(**values)
    if _refresh(service):
        _last_success[key] = now


# (model label, pk) -> `now` of the last success this process wrote for the service.
_last_success: dict[tuple[str, Any], dt.datetime] = {}
# A healthy service answering many calls a second needs its row written once a second,
# not once per call (the write was two round trips on the hot path of every page).
SUCCESS_WRITE_EVERY = dt.timedelta(seconds=1)


def _already_recorded(
    service: Service, key: tuple[str, Any], now: dt.datetime, health_status: str
) -> bool:
    """True when the row, as this instance read it, already says what a success would
    write, and this process wrote a success for it less than a second ago. A failure
    recorded by any process shows on the next fresh read and is reset as before."""
    if (
        service.consecutive_failures
        or service.circuit_open_until is not None
        or service.health_status != health_status
    ):
        return False
    last = _last_success.get(key)
    if last is None or not (dt.timedelta(0) <= now - last < SUCCESS_WRITE_EVERY):
        return False
    service.last_seen_at = service.last_checked_at = now
    return True


def _refresh(service: Service) -> bool:
    """Re-read the breaker fields; False when the row is gone."""
    try:
        service.refresh_from_db(fields=_BREAKER_FIELDS)
    except type(service).DoesNotExist:
        return False
    return True


def record_failure(
    service: Service, now: dt.datetime, error: str, *, threshold: int, open_s: float
) -> FailureRecord:
    """Count one infrastructure failure; at `threshold` in a row the service goes
    offline and the circuit opens for `open_s` seconds (below it: degraded).

    One statement: the CASE conditions see the row before the increment, so the
    decision and the count can never disagree under concurrency.
    """
    threshold = max(1, threshold)
    reaches = Q(consecutive_failures__gte=threshold - 1)
    _last_success.pop((service._meta.label, service.pk), None)
    _manager(service).filter(pk=service.pk).update(
        consecutive_failures=F("consecutive_failures") + 1,
        health_status=Case(
            When(reaches, then=Value(HealthStatus.OFFLINE)),
            default=Value(HealthStatus.DEGRADED),
        ),
        circuit_open_until=Case(
            When(reaches, then=Value(now + dt.timedelta(seconds=open_s))),
            default=F("circuit_open_until"),
        ),
        last_error=hide(error or "", [getattr(service, "api_key", "")])[:LAST_ERROR_LIMIT],
        last_checked_at=now,
    )
    if not _refresh(service):
        # Deleted meanwhile (e.g. through the API while its probe ran): nothing to count.
        return FailureRecord(consecutive_failures=0, opened=False, just_opened=False)
    count = service.consecutive_failures
    if count == threshold:  # just went offline: tell the bus once (webhooks listen)
        service_offline.send(sender=type(service), service=service)
    return FailureRecord(
        consecutive_failures=count, opened=count >= threshold, just_opened=count == threshold
    )
