"""What the orchestrator is doing right now (for the API and the dashboard), and the
validation of recurring-mission schedules.

`orchestrator_status(now)` costs a fixed number of queries whatever the row counts:
one per table it summarizes (mission counts are capped, `orchestrator.counting`).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from croniter import croniter
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Count

from orchestrator.actions import mission_counts_by_status
from orchestrator.models import BrowserSession, OrchestratorInstance
from orchestrator.states import SessionStatus
from registry import config
from registry.models import Proxy, ProxyStatus, Worker

MANAGER_STAT_KEYS = ("last_tick_at", "duration_ms", "did", "error", "error_at", "ticks")


def event_bus_mode() -> str:
    return "notify" if connection.vendor == "postgresql" else "polling"


def _manager_stats(stats: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(stats, dict):
        return {}
    return {
        str(name): {key: values.get(key) for key in MANAGER_STAT_KEYS}
        for name, values in stats.items()
        if isinstance(values, dict)
    }


def _counts(rows: Any, keys: Any) -> dict[str, int]:
    counts = {str(k): 0 for k in keys}
    counts.update({status: n for status, n in rows})
    return counts


def heartbeat_fresh(now: dt.datetime) -> bool:
    """A running orchestrator's heartbeat is newer than `heartbeat_stale_after_s`."""
    max_age = int(config.load().heartbeat_stale_after_s)
    return OrchestratorInstance.objects.filter(
        stopped_at__isnull=True, heartbeat_at__gte=now - dt.timedelta(seconds=max_age)
    ).exists()


def orchestrator_status(now: dt.datetime) -> dict[str, Any]:
    cfg = config.load()
    queue = mission_counts_by_status()
    stale_after = int(cfg.heartbeat_stale_after_s)
    instances = [
        {
            "name": row.name,
            "hostname": row.hostname,
            "pid": row.pid,
            "started_at": row.started_at,
            "heartbeat_at": row.heartbeat_at,
            "event_bus": row.event_bus,
            "managers": _manager_stats(row.stats),
        }
        for row in OrchestratorInstance.objects.filter(
            stopped_at__isnull=True,
            heartbeat_at__gte=now - dt.timedelta(seconds=stale_after),
        ).order_by("name")
    ]
    sessions = _counts(
        BrowserSession.objects.values_list("status").annotate(n=Count("id")).order_by(),
        SessionStatus.values,
    )
    proxies = _counts(
        Proxy.objects.values_list("status").annotate(n=Count("id")).order_by(),
        ProxyStatus.values,
    )
    workers = [
        {
            "id": w.pk,
            "name": w.name,
            "health_status": w.health_status,
            "draining": w.draining,
            "active_sessions": w.active_sessions,
            "max_sessions": w.max_sessions,
            "consecutive_failures": w.consecutive_failures,
            "circuit_open_until": w.circuit_open_until,
            "circuit_open": w.circuit_open(now),
            "last_seen_at": w.last_seen_at,
        }
        for w in Worker.objects.filter(enabled=True)
        .only(
            "name",
            "health_status",
            "draining",
            "active_sessions",
            "max_sessions",
            "consecutive_failures",
            "circuit_open_until",
            "last_seen_at",
        )
        .order_by("name")
    ]
    return {
        "now": now,
        "paused": bool(cfg.paused),
        "event_bus": event_bus_mode(),
        "heartbeat_stale_after_s": stale_after,
        "instances": instances,
        "queue": queue.counts,
        # States whose count in `queue` is an estimate (above the exact-count cap).
        "queue_approximate": sorted(queue.approximate),
        "sessions": sessions,
        "capacity": {
            "used": sum(w["active_sessions"] for w in workers),
            "total": sum(w["max_sessions"] for w in workers),
            "workers": workers,
        },
        "proxies": proxies,
    }


# Recurring missions


def validate_cron(value: str) -> str:
    """A standard five-field cron expression (or an @alias such as @daily) that fires."""
    expr = " ".join((value or "").split())
    fields = expr.split(" ")
    if not expr or (not expr.startswith("@") and len(fields) != 5) or not croniter.is_valid(expr):
        raise ValidationError(
            "Enter a valid five-field cron expression, e.g. '0 6 * * *'.", code="invalid"
        )
    try:
        # Valid syntax can still never fire (30 February).
        croniter(expr, dt.datetime.now(dt.UTC)).get_next(dt.datetime)
    except ValueError:
        raise ValidationError("This cron expression never fires.", code="never") from None
    return expr


def validate_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise ValidationError(
            f"Unknown time zone {value!r}; use an IANA name such as America/Sao_Paulo.",
            code="invalid",
        ) from None
    return value
