"""Prometheus metrics at /metrics, computed from the database at scrape time.

Every web process answers the same numbers (no per-process counters to add up), and
a scrape costs a fixed number of queries whatever the row counts: one GROUP BY per
table it summarizes. Access: `Authorization: Bearer <METRICS_TOKEN>` or a staff
session; anything else gets 401/403.
"""

from __future__ import annotations

import datetime as dt
import hmac
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestrator.models import BrowserSession, Mission, MissionEvent, OrchestratorInstance
from orchestrator.states import MissionStatus, SessionStatus
from registry.models import HealthStatus, Proxy, ProxyStatus, Uploader, Worker, Writer

SERVICES: tuple[tuple[str, Any], ...] = (
    ("worker", Worker),
    ("writer", Writer),
    ("uploader", Uploader),
)


def _counts(rows: Any, keys: Any) -> dict[str, int]:
    counts = {str(k): 0 for k in keys}
    for key, n in rows:
        counts[str(key)] = n
    return counts


def _seconds_since(now: dt.datetime, then: Any) -> float | None:
    if not isinstance(then, dt.datetime):
        return None
    return max(0.0, (now - then).total_seconds())


class DatabaseCollector(Collector):
    """Gauges read from the rows the orchestrator keeps up to date."""

    def __init__(self, now: dt.datetime | None = None):
        self.now = now

    def collect(self) -> Iterator[Metric]:
        now = self.now or timezone.now()
        started = time.monotonic()
        yield from self._missions(now)
        yield from self._sessions()
        yield from self._proxies()
        yield from self._services(now)
        yield from self._orchestrators(now)
        scrape = GaugeMetricFamily(
            "mc_scrape_duration_seconds", "Time spent computing these metrics."
        )
        scrape.add_metric([], time.monotonic() - started)
        yield scrape

    def _missions(self, now: dt.datetime) -> Iterator[Metric]:
        by_state = GaugeMetricFamily("mc_missions", "Missions per state.", labels=["state"])
        rows = Mission.objects.order_by().values_list("status").annotate(n=Count("id"))
        for state, n in _counts(rows, MissionStatus.values).items():
            by_state.add_metric([state], n)
        yield by_state

        window = settings.METRICS_EVENT_WINDOW_S
        transitions = GaugeMetricFamily(
            "mc_mission_transitions_recent",
            f"Mission state transitions in the last {window} s (from MissionEvent).",
            labels=["from_state", "to_state"],
        )
        errors = GaugeMetricFamily(
            "mc_mission_errors_recent",
            f"Mission events with an error code in the last {window} s.",
            labels=["error_code"],
        )
        since = now - dt.timedelta(seconds=window)
        recent = MissionEvent.objects.filter(created_at__gte=since).order_by()
        for src, dst, n in (
            recent.filter(kind=MissionEvent.Kind.TRANSITION)
            .values_list("from_status", "to_status")
            .annotate(n=Count("id"))
        ):
            transitions.add_metric([src, dst], n)
        for code, n in (
            recent.exclude(error_code="").values_list("error_code").annotate(n=Count("id"))
        ):
            errors.add_metric([code], n)
        yield transitions
        yield errors

    def _sessions(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "mc_browser_sessions", "Browser sessions per status.", labels=["status"]
        )
        rows = BrowserSession.objects.order_by().values_list("status").annotate(n=Count("id"))
        for status, n in _counts(rows, SessionStatus.values).items():
            family.add_metric([status], n)
        yield family

    def _proxies(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "mc_proxies", "Proxies per status and enabled flag.", labels=["status", "enabled"]
        )
        rows = Proxy.objects.order_by().values_list("status", "enabled").annotate(n=Count("id"))
        seen = {(str(s), bool(e)): n for s, e, n in rows}
        for status in ProxyStatus.values:
            for enabled in (True, False):
                family.add_metric([status, str(enabled).lower()], seen.get((status, enabled), 0))
        yield family

    def _services(self, now: dt.datetime) -> Iterator[Metric]:
        labels = ["kind", "name"]
        up = GaugeMetricFamily(
            "mc_service_up", "1 when the last health check succeeded.", labels=labels
        )
        health = GaugeMetricFamily(
            "mc_service_health",
            "Health status of each service (one-hot).",
            labels=[*labels, "status"],
        )
        latency = GaugeMetricFamily(
            "mc_service_latency_seconds", "Latency of the last call or health check.", labels=labels
        )
        failures = GaugeMetricFamily(
            "mc_service_consecutive_failures", "Consecutive failed calls.", labels=labels
        )
        breaker = GaugeMetricFamily(
            "mc_service_circuit_open", "1 while the circuit breaker is open.", labels=labels
        )
        seen = GaugeMetricFamily(
            "mc_service_last_seen_age_seconds",
            "Seconds since the service last answered.",
            labels=labels,
        )
        fields = (
            "name",
            "enabled",
            "health_status",
            "last_latency_ms",
            "consecutive_failures",
            "circuit_open_until",
            "last_seen_at",
        )
        for kind, model in SERVICES:
            for row in model.objects.order_by().values(*fields):
                key = [kind, row["name"]]
                up.add_metric(key, 1 if row["health_status"] == HealthStatus.OK else 0)
                for status in HealthStatus.values:
                    health.add_metric([*key, status], 1 if row["health_status"] == status else 0)
                if row["last_latency_ms"] is not None:
                    latency.add_metric(key, row["last_latency_ms"] / 1000)
                failures.add_metric(key, row["consecutive_failures"])
                until = row["circuit_open_until"]
                breaker.add_metric(key, 1 if until is not None and until > now else 0)
                age = _seconds_since(now, row["last_seen_at"])
                if age is not None:
                    seen.add_metric(key, age)
        yield from (up, health, latency, failures, breaker, seen)

    def _orchestrators(self, now: dt.datetime) -> Iterator[Metric]:
        heartbeat = GaugeMetricFamily(
            "mc_orchestrator_heartbeat_age_seconds",
            "Seconds since each running orchestrator's last heartbeat.",
            labels=["instance"],
        )
        duration = GaugeMetricFamily(
            "mc_manager_tick_duration_seconds",
            "Duration of each manager's last tick.",
            labels=["instance", "manager"],
        )
        ticks = GaugeMetricFamily(
            "mc_manager_ticks",
            "Ticks run by each manager since its process started.",
            labels=["instance", "manager"],
        )
        tick_age = GaugeMetricFamily(
            "mc_manager_last_tick_age_seconds",
            "Seconds since each manager's last tick.",
            labels=["instance", "manager"],
        )
        for inst in OrchestratorInstance.objects.filter(stopped_at__isnull=True).only(
            "name", "heartbeat_at", "stats"
        ):
            heartbeat.add_metric([inst.name], _seconds_since(now, inst.heartbeat_at) or 0.0)
            stats = inst.stats if isinstance(inst.stats, dict) else {}
            for manager, stat in stats.items():
                if not isinstance(stat, dict):
                    continue
                key = [inst.name, str(manager)]
                if isinstance(stat.get("duration_ms"), int | float):
                    duration.add_metric(key, stat["duration_ms"] / 1000)
                if isinstance(stat.get("ticks"), int):
                    ticks.add_metric(key, stat["ticks"])
                last = stat.get("last_tick_at")
                if isinstance(last, str):
                    try:
                        age = _seconds_since(now, dt.datetime.fromisoformat(last))
                    except ValueError:
                        age = None
                    if age is not None:
                        tick_age.add_metric(key, age)
        yield from (heartbeat, duration, ticks, tick_age)


def render(now: dt.datetime | None = None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(now))
    return generate_latest(registry)


def _token_ok(request: HttpRequest) -> bool | None:
    """True/False for a presented bearer token, None when there is none."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    expected = settings.METRICS_TOKEN
    return bool(expected) and hmac.compare_digest(token.strip().encode(), expected.encode())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = _token_ok(request)
    if token is False:
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    if token is None:
        user = request.user
        if not user.is_authenticated:
            response = HttpResponse("authentication required\n", status=401)
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            response["Content-Type"] = "text/plain"
            return response
        if not user.is_staff:
            return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    response = HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
