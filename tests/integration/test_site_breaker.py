"""Per-site circuit breaker: a domain whose block rate or failed sessions cross the
thresholds is paused (no new sessions), probed after the cool-down, resumable."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from orchestrator import actions, events, site_breaker
from orchestrator.models import (
    BrowserSession,
    DomainBreaker,
    Mission,
    MissionEvent,
    WebhookDelivery,
    WebhookEndpoint,
)
from orchestrator.states import MissionStatus
from registry import config
from tests import factories
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.integration.engine_helpers import build_fleet

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_leftover_wakeups() -> Iterator[None]:
    # Events published inside a test's rolled-back transaction leave NOTIFY wake-ups
    # queued on the thread; drop them so later transactional tests see only their own.
    yield
    events._pending.wake.clear()


NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def breaker(domain: str = "example.com") -> DomainBreaker:
    return DomainBreaker.objects.get(domain=domain)


def test_a_high_block_rate_in_the_window_pauses_the_domain() -> None:
    cfg = config.load()
    site_breaker.record_results("www.example.com", 10, 4, NOW, cfg)
    assert breaker().state == "closed"  # below min results

    site_breaker.record_results("example.com", 10, 7, NOW + dt.timedelta(seconds=30), cfg)

    row = breaker()
    assert row.state == "open"
    assert row.paused_until == NOW + dt.timedelta(seconds=30 + 900)
    assert row.reason == "55% dos resultados bloqueados (11 de 20) em 10 min"
    assert "pausado pelo disjuntor" in site_breaker.paused_reason("example.com", NOW)
    assert site_breaker.paused_reason("other.com", NOW) == ""


def test_the_window_slides_so_old_results_do_not_count() -> None:
    cfg = config.load()
    site_breaker.record_results("example.com", 19, 19, NOW, cfg)
    site_breaker.record_results("example.com", 5, 1, NOW + dt.timedelta(minutes=11), cfg)
    row = breaker()
    assert (row.state, row.results, row.blocked) == ("closed", 5, 1)


def test_after_the_cool_down_the_probe_closes_or_reopens() -> None:
    cfg = config.load()
    site_breaker.record_results("example.com", 20, 20, NOW, cfg)
    later = NOW + dt.timedelta(minutes=16)
    assert site_breaker.paused_reason("example.com", later) == ""  # allocation may probe

    site_breaker.record_results("example.com", 5, 5, later, cfg)
    assert breaker().state == "open" and breaker().trips == 2
    assert breaker().reason.startswith("teste falhou")

    even_later = later + dt.timedelta(minutes=16)
    site_breaker.record_results("example.com", 3, 0, even_later, cfg)
    assert breaker().state == "probing"
    site_breaker.record_results("example.com", 2, 0, even_later, cfg)
    assert breaker().state == "closed" and breaker().paused_until is None


def test_failed_sessions_pause_the_domain_but_infrastructure_faults_do_not() -> None:
    now = timezone.now()
    mission = factories.MissionFactory(domain="example.com")
    for i in range(5):
        MissionEvent.objects.create(
            mission=mission,
            kind="session",
            error_code="SESSION_OPEN_FAILED",
            data={"infra": True},
            created_at=now,
            message=f"infra {i}",
        )
    assert site_breaker.session_failed("example.com", now, config.load()) is None
    for i in range(5):
        MissionEvent.objects.create(
            mission=mission,
            kind="session",
            error_code="SESSION_FAILED",
            data={"infra": False},
            created_at=now,
            message=f"falhou {i}",
        )

    row = site_breaker.session_failed("example.com", now, config.load())

    assert row is not None and row.state == "open"
    assert row.reason == "5 sessões falharam em 10 min"


def test_a_paused_domain_gets_no_new_sessions_and_explain_says_so(
    viewer_api: APIClient, fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    fleet = build_fleet(fake_worker, fake_writer)
    endpoint = WebhookEndpoint.objects.create(
        name="ops", url="http://127.0.0.1:9/x", secret="k" * 16, events=["domain.paused"]
    )
    site_breaker.record_results("example.com", 20, 20, timezone.now(), config.load())
    paused = actions.create_mission(name="Pausada", urls=["https://example.com/1"])
    other = actions.create_mission(name="Livre", urls=["https://other.com/1"])

    fleet.step()

    paused.refresh_from_db()
    assert paused.status == MissionStatus.QUEUED
    assert paused.wait_reason.startswith("ALLOC_DOMAIN_PAUSED: domínio example.com pausado")
    assert not BrowserSession.objects.filter(mission=paused).exists()
    assert Mission.objects.get(pk=other.pk).status != MissionStatus.QUEUED
    body = viewer_api.get(f"/api/missions/{paused.pk}/explain/").json()
    assert any(c["code"] == "site_breaker" for c in body["groups"][0]["failed"])
    assert WebhookDelivery.objects.filter(endpoint=endpoint, event="domain.paused").count() == 1

    site_breaker.resume("example.com", actor="ana")
    fleet.drive_to(paused, MissionStatus.FINALIZADO)


@pytest.mark.django_db(transaction=True)  # results reach the breaker after commit
def test_the_engine_pauses_a_site_that_blocks_everything(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    fleet = build_fleet(
        fake_worker,
        fake_writer,
        overrides={"site_breaker_min_results": 10, "max_item_attempts": 1},
    )
    fake_worker.blocked_proxies = {p.external_id for p in fleet.proxies}
    mission = actions.create_mission(
        name="Bloqueio total", urls=[f"https://example.com/{i}" for i in range(20)]
    )

    fleet.drive(lambda: DomainBreaker.objects.filter(state="open").exists(), what="paused")

    assert breaker().reason.startswith("100% dos resultados bloqueados")
    opened = breaker().opened_at
    assert opened is not None
    fleet.step(rounds=5)
    assert not BrowserSession.objects.filter(mission=mission, created_at__gt=opened).exists()
    mission.refresh_from_db()
    if mission.status == MissionStatus.QUEUED:
        assert "pausado pelo disjuntor" in mission.wait_reason


def test_api_lists_and_operators_resume(
    viewer_api: APIClient, operator_api: APIClient, client: Client
) -> None:
    site_breaker.record_results("example.com", 20, 20, timezone.now(), config.load())

    listed = viewer_api.get("/api/execution/domains/?paused=true").json()
    assert [(d["domain"], d["paused"]) for d in listed] == [("example.com", True)]
    assert viewer_api.post("/api/execution/domains/example.com/resume/").status_code == 403
    assert operator_api.post("/api/execution/domains/nope.com/resume/").status_code == 404

    client.force_login(factories.UserFactory(role="operator"))
    page = client.get("/execucao/").content.decode()
    assert "Sites pausados pelo disjuntor" in page and "example.com" in page

    resumed = operator_api.post("/api/execution/domains/example.com/resume/")
    assert resumed.status_code == 200
    assert resumed.json()["state"] == "closed" and resumed.json()["resumed_by"]
    assert viewer_api.get("/api/execution/domains/?paused=true").json() == []


def test_dashboard_resume_button(client: Client) -> None:
    site_breaker.record_results("example.com", 20, 20, timezone.now(), config.load())
    client.force_login(factories.UserFactory(role="viewer"))
    assert client.post("/execucao/sites/example.com/retomar/").status_code == 403
    client.force_login(factories.UserFactory(role="operator"))

    response = client.post("/execucao/sites/example.com/retomar/")

    assert response.status_code == 302
    assert breaker().state == "closed"
