"""/api/execution/: orchestrator status, pause and resume."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from orchestrator.states import MissionStatus, SessionStatus
from orchestrator.status import orchestrator_status
from registry import config
from tests import factories

pytestmark = [
    pytest.mark.django_db,
    # Settings issue reported to the lead: whitenoise warns when STATIC_ROOT is absent.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

URL = "/api/execution/orchestrator-status"


def populate(n: int, now: dt.datetime) -> None:
    for i in range(n):
        factories.OrchestratorInstanceFactory.create(
            heartbeat_at=now, stats={"sessions": {"ticks": i, "did": True}}
        )
        factories.MissionFactory.create(status=MissionStatus.EXTRAINDO)
        factories.BrowserSessionFactory.create(status=SessionStatus.BUSY)


def test_status_lists_only_live_instances_with_their_manager_stats() -> None:
    now = timezone.now()
    live = factories.OrchestratorInstanceFactory.create(
        name="a:1",
        heartbeat_at=now - dt.timedelta(seconds=5),
        event_bus="notify",
        stats={
            "sessions": {
                "last_tick_at": "2026-01-01T00:00:00Z",
                "duration_ms": 12.5,
                "did": True,
                "error": "",
                "error_at": None,
                "ticks": 42,
                "extra": "dropped",
            }
        },
    )
    factories.OrchestratorInstanceFactory.create(
        name="stale:2", heartbeat_at=now - dt.timedelta(minutes=5)
    )
    factories.OrchestratorInstanceFactory.create(name="stopped:3", heartbeat_at=now, stopped_at=now)

    status = orchestrator_status(now)

    assert [i["name"] for i in status["instances"]] == [live.name]
    instance = status["instances"][0]
    assert (instance["hostname"], instance["pid"], instance["event_bus"]) == (
        live.hostname,
        live.pid,
        "notify",
    )
    assert instance["managers"] == {
        "sessions": {
            "last_tick_at": "2026-01-01T00:00:00Z",
            "duration_ms": 12.5,
            "did": True,
            "error": "",
            "error_at": None,
            "ticks": 42,
        }
    }


def test_status_staleness_follows_the_config_key() -> None:
    now = timezone.now()
    factories.OrchestratorInstanceFactory.create(heartbeat_at=now - dt.timedelta(seconds=100))
    assert orchestrator_status(now)["instances"] == []

    config.set_value("heartbeat_stale_after_s", 120)

    assert len(orchestrator_status(now)["instances"]) == 1


def test_status_zero_fills_every_mission_session_and_proxy_state() -> None:
    factories.MissionFactory.create(status=MissionStatus.ERRO)
    factories.MissionFactory.create(status=MissionStatus.ERRO)
    factories.BrowserSessionFactory.create(status=SessionStatus.STUCK)

    status = orchestrator_status(timezone.now())

    assert set(status["queue"]) == set(MissionStatus.values)
    assert status["queue"]["ERRO"] == 2
    assert status["queue"]["QUEUED"] == 1  # the session's mission
    assert set(status["sessions"]) == set(SessionStatus.values)
    assert status["sessions"]["stuck"] == 1
    assert status["proxies"] == {"available": 1, "cooldown": 0, "banned": 0, "disabled": 0}


def test_status_sums_capacity_over_enabled_workers_with_their_breaker_state() -> None:
    now = timezone.now()
    open_until = now + dt.timedelta(seconds=30)
    broken = factories.WorkerFactory.create(
        name="a-broken",
        active_sessions=2,
        max_sessions=4,
        health_status="offline",
        consecutive_failures=5,
        circuit_open_until=open_until,
    )
    factories.WorkerFactory.create(name="b-ok", active_sessions=1, max_sessions=8)
    factories.WorkerFactory.create(
        name="c-disabled", enabled=False, active_sessions=3, max_sessions=10
    )

    capacity = orchestrator_status(now)["capacity"]

    assert (capacity["used"], capacity["total"]) == (3, 12)
    assert [w["name"] for w in capacity["workers"]] == ["a-broken", "b-ok"]
    row = capacity["workers"][0]
    assert row["id"] == broken.pk
    assert (row["health_status"], row["consecutive_failures"]) == ("offline", 5)
    assert row["circuit_open_until"] == open_until
    assert row["circuit_open"] is True
    assert capacity["workers"][1]["circuit_open"] is False


def test_status_reports_the_event_bus_and_the_paused_flag() -> None:
    config.set_value("paused", True)

    status = orchestrator_status(timezone.now())

    assert status["paused"] is True
    expected = "notify" if connection.vendor == "postgresql" else "polling"
    assert status["event_bus"] == expected


def test_status_costs_the_same_queries_with_few_or_many_rows() -> None:
    now = timezone.now()

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            orchestrator_status(now)
        return len(ctx.captured_queries)

    populate(3, now)
    count()  # warm per-process caches first
    few = count()
    populate(27, now)

    assert count() == few


@pytest.mark.parametrize("path", [URL, URL + "/"])
def test_the_endpoint_answers_with_and_without_trailing_slash(
    viewer_api: APIClient, path: str
) -> None:
    factories.OrchestratorInstanceFactory.create()

    response = viewer_api.get(path)

    assert response.status_code == 200
    body = response.json()
    assert len(body["instances"]) == 1
    assert set(body) >= {"instances", "queue", "sessions", "capacity", "proxies", "paused"}


def test_the_endpoint_query_count_does_not_grow_with_rows(viewer_api: APIClient) -> None:
    now = timezone.now()

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert viewer_api.get(URL).status_code == 200
        return len(ctx.captured_queries)

    populate(3, now)
    count()  # warm per-process caches first
    few = count()
    populate(27, now)

    assert count() == few


@pytest.mark.parametrize(
    ("role", "expected"), [(None, 401), ("viewer", 200), ("operator", 200), ("admin", 200)]
)
def test_reading_the_status_needs_viewer(
    make_api_client: Callable[..., APIClient], role: str | None, expected: int
) -> None:
    assert make_api_client(role).get(URL).status_code == expected


def test_pause_and_resume_flip_the_config_flag(operator_api: APIClient) -> None:
    paused = operator_api.post("/api/execution/pause/")
    assert paused.status_code == 200
    assert paused.json() == {"paused": True}
    assert config.get("paused") is True
    assert operator_api.get(URL).json()["paused"] is True

    resumed = operator_api.post("/api/execution/resume/")
    assert resumed.json() == {"paused": False}
    assert config.get("paused") is False


@pytest.mark.parametrize(
    ("role", "expected"), [(None, 401), ("viewer", 403), ("operator", 200), ("admin", 200)]
)
def test_pausing_needs_operator(
    make_api_client: Callable[..., APIClient], role: str | None, expected: int
) -> None:
    response = make_api_client(role).post("/api/execution/pause/")

    assert response.status_code == expected
    assert config.get("paused") is (expected == 200)


def test_pause_does_not_accept_get(operator_api: APIClient) -> None:
    assert operator_api.get("/api/execution/pause/").status_code == 405
