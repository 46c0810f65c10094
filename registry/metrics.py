"""Prometheus families for the registry's rows (proxies, services); registered under
the ``metrics`` hook in `registry.apps`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from mission_control.metrics import seconds_since
from registry.models import HealthStatus, Proxy, ProxyStatus, Uploader, Worker, Writer

SERVICES: tuple[tuple[str, Any], ...] = (
    ("worker", Worker),
    ("writer", Writer),
    ("uploader", Uploader),
)


def collect(now: dt.datetime) -> Iterator[Metric]:
    yield from proxies(now)
    yield from services(now)


def proxies(now: dt.datetime) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "mc_proxies", "Proxies per status and enabled flag.", labels=["status", "enabled"]
    )
    rows = Proxy.objects.order_by().values_list("status", "enabled").annotate(n=Count("id"))
    seen = {(str(s), bool(e)): n for s, e, n in rows}
    for status in ProxyStatus.values:
        for enabled in (True, False):
            family.add_metric([status, str(enabled).lower()], seen.get((status, enabled), 0))
    yield family


def services(now: dt.datetime) -> Iterator[Metric]:
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
            age = seconds_since(now, row["last_seen_at"])
            if age is not None:
                seen.add_metric(key, age)
    yield from (up, health, latency, failures, breaker, seen)
