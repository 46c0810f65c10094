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
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mission_control import extensions


def counts(rows: Any, keys: Any) -> dict[str, int]:
    counts = {str(k): 0 for k in keys}
    for key, n in rows:
        counts[str(key)] = n
    return counts


def seconds_since(now: dt.datetime, then: Any) -> float | None:
    if not isinstance(then, dt.datetime):
        return None
    return max(0.0, (now - then).total_seconds())


class DatabaseCollector(Collector):
    """Gauges read from the rows the orchestrator keeps up to date: each app registers
    its families under the ``metrics`` hook (`mission_control.extensions`)."""

    def __init__(self, now: dt.datetime | None = None):
        self.now = now

    def collect(self) -> Iterator[Metric]:
        now = self.now or timezone.now()
        started = time.monotonic()
        for provider in extensions.providers("metrics"):
            yield from provider(now)
        scrape = GaugeMetricFamily(
            "mc_scrape_duration_seconds", "Time spent computing these metrics."
        )
        scrape.add_metric([], time.monotonic() - started)
        yield scrape


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
