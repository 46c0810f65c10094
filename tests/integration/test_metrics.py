"""/metrics: Prometheus text computed from the database, for a bearer token or a
staff session only, at a constant number of queries."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.models import MissionEvent
from tests import factories

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-8f3a"


@pytest.fixture(autouse=True)
def _token(settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN


def scrape(client: Client | None = None, token: str | None = TOKEN) -> dict[str, float]:
    client = client or Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def test_anonymous_and_wrong_tokens_are_refused(client: Client) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403


def test_without_a_configured_token_no_bearer_is_accepted(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""

    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer x").status_code == 403


def test_a_staff_session_may_scrape_but_not_a_plain_user(client: Client) -> None:
    client.force_login(factories.UserFactory(role="viewer"))
    assert client.get("/metrics").status_code == 403

    client.force_login(factories.UserFactory(role="viewer", is_staff=True))
    assert scrape(client, token=None)


def test_it_counts_missions_sessions_and_proxies_per_state() -> None:
    factories.MissionFactory(status="QUEUED")
    factories.MissionFactory(status="QUEUED")
    running = factories.MissionFactory(status="EXTRAINDO")
    factories.BrowserSessionFactory(mission=running, status="busy")
    factories.ProxyFactory(status="cooldown")
    factories.ProxyFactory(status="available", enabled=False)

    samples = scrape()

    assert samples["mc_missions{state=QUEUED}"] == 2
    assert samples["mc_missions{state=EXTRAINDO}"] == 1
    assert samples["mc_missions{state=FINALIZADO}"] == 0
    assert samples["mc_browser_sessions{status=busy}"] == 1
    assert samples["mc_browser_sessions{status=closed}"] == 0
    # The session's factory made one more available, enabled proxy.
    assert samples["mc_proxies{enabled=true,status=cooldown}"] == 1
    assert samples["mc_proxies{enabled=false,status=available}"] == 1


def test_it_reports_recent_transitions_and_errors_only_inside_the_window(settings: Any) -> None:
    settings.METRICS_EVENT_WINDOW_S = 300
    now = timezone.now()
    mission = factories.MissionFactory()
    for minutes in (1, 2, 30):
        factories.MissionEventFactory(
            mission=mission,
            kind=MissionEvent.Kind.TRANSITION,
            from_status="QUEUED",
            to_status="ATRIBUIDO",
            created_at=now - dt.timedelta(minutes=minutes),
        )
    factories.MissionEventFactory(
        mission=mission, kind=MissionEvent.Kind.ERROR, error_code="SCRAPE_TIMEOUT"
    )

    samples = scrape()

    assert samples["mc_mission_transitions_recent{from_state=QUEUED,to_state=ATRIBUIDO}"] == 2
    assert samples["mc_mission_errors_recent{error_code=SCRAPE_TIMEOUT}"] == 1


def test_it_exposes_service_health_latency_and_breakers() -> None:
    now = timezone.now()
    factories.WorkerFactory(name="w-ok", health_status="ok", last_latency_ms=120)
    factories.WriterFactory(
        name="wr-down",
        health_status="offline",
        consecutive_failures=4,
        circuit_open_until=now + dt.timedelta(minutes=1),
        last_seen_at=now - dt.timedelta(seconds=90),
    )

    samples = scrape()

    assert samples["mc_service_up{kind=worker,name=w-ok}"] == 1
    assert samples["mc_service_latency_seconds{kind=worker,name=w-ok}"] == pytest.approx(0.12)
    assert samples["mc_service_up{kind=writer,name=wr-down}"] == 0
    assert samples["mc_service_health{kind=writer,name=wr-down,status=offline}"] == 1
    assert samples["mc_service_consecutive_failures{kind=writer,name=wr-down}"] == 4
    assert samples["mc_service_circuit_open{kind=writer,name=wr-down}"] == 1
    assert samples["mc_service_last_seen_age_seconds{kind=writer,name=wr-down}"] >= 90


def test_it_exposes_manager_ticks_and_heartbeats_of_running_orchestrators() -> None:
    now = timezone.now()
    factories.OrchestratorInstanceFactory(
        name="host:1",
        heartbeat_at=now - dt.timedelta(seconds=5),
        stats={
            "sessions": {"duration_ms": 250.0, "ticks": 7, "last_tick_at": now.isoformat()},
            "broken": "not a dict",
        },
    )
    factories.OrchestratorInstanceFactory(name="host:2", stopped_at=now)

    samples = scrape()

    assert samples["mc_manager_tick_duration_seconds{instance=host:1,manager=sessions}"] == 0.25
    assert samples["mc_manager_ticks{instance=host:1,manager=sessions}"] == 7
    assert samples["mc_orchestrator_heartbeat_age_seconds{instance=host:1}"] >= 5
    assert not any("host:2" in key for key in samples)


def test_a_scrape_costs_the_same_queries_whatever_the_row_counts() -> None:
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            scrape()
        return len(queries)

    factories.MissionFactory()
    count()  # warm per-process caches first
    before = count()
    for _ in range(5):
        mission = factories.MissionFactory(status="EXTRAINDO")
        factories.BrowserSessionFactory(mission=mission)
        factories.MissionEventFactory(mission=mission)
        factories.OrchestratorInstanceFactory()

    assert count() == before
