"""Prometheus families for the engine's rows (missions, sessions, orchestrators);
registered under the ``metrics`` hook in `orchestrator.apps`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from mission_control.metrics import counts, seconds_since
from orchestrator.models import BrowserSession, Mission, MissionEvent, OrchestratorInstance
from orchestrator.states import MissionStatus, SessionStatus


def collect(now: dt.datetime) -> Iterator[Metric]:
    yield from missions(now)
    yield from sessions(now)
    yield from orchestrators(now)


def missions(now: dt.datetime) -> Iterator[Metric]:
    by_state = GaugeMetricFamily("mc_missions", "Missions per state.", labels=["state"])
    rows = Mission.objects.order_by().values_list("status").annotate(n=Count("id"))
    for state, n in counts(rows, MissionStatus.values).items():
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
    for code, n in recent.exclude(error_code="").values_list("error_code").annotate(n=Count("id")):
        errors.add_metric([code], n)
    yield transitions
    yield errors


def sessions(now: dt.datetime) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "mc_browser_sessions", "Browser sessions per status.", labels=["status"]
    )
    rows = BrowserSession.objects.order_by().values_list("status").annotate(n=Count("id"))
    for status, n in counts(rows, SessionStatus.values).items():
        family.add_metric([status], n)
    yield family


def orchestrators(now: dt.datetime) -> Iterator[Metric]:
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
        heartbeat.add_metric([inst.name], seconds_since(now, inst.heartbeat_at) or 0.0)
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
                    age = seconds_since(now, dt.datetime.fromisoformat(last))
                except ValueError:
                    age = None
                if age is not None:
                    tick_age.add_metric(key, age)
    yield from (heartbeat, duration, ticks, tick_age)
