"""Why is this waiting? GET /api/missions/{id}/explain/, POST /api/allocation/dry-run/,
the mission page and the missions list tooltips."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from orchestrator import actions, events, explain
from orchestrator.models import BrowserSession, Mission, MissionEvent, ProxyDomainHealth
from orchestrator.states import MissionStatus
from registry.models import Proxy, ProxyStatus, SiteConfig
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


def br_residential_site() -> SiteConfig:
    factories.WriterFactory(is_default=True)
    return factories.SiteConfigFactory(
        domain="example.com", proxy_types=["residential"], countries=["BR"], max_sessions=2
    )


def test_it_names_every_failed_constraint_in_plain_words(viewer_api: APIClient) -> None:
    now = timezone.now()
    br_residential_site()
    for i in range(5):
        factories.ProxyFactory(external_id=f"br-{i}", type="residential", country="BR")
    SiteConfig.objects.filter(domain="example.com").update(blocked_proxies=["br-0", "br-1", "br-2"])
    Proxy.objects.filter(external_id__in=["br-3", "br-4"]).update(
        status=ProxyStatus.COOLDOWN, cooldown_until=now + dt.timedelta(minutes=5)
    )
    factories.WorkerFactory(max_sessions=8, active_sessions=8)
    mission = factories.MissionFactory(n_items=3)

    body = viewer_api.get(f"/api/missions/{mission.pk}/explain/").json()

    assert body["waiting"] is True
    assert body["sessions_possible"] == 0
    assert body["summary"] == (
        "workers sem capacidade (8/8); nenhuma sessão com proxy residencial BR: "
        "3 de 5 bloqueados para example.com, 2 em cooldown"
    )
    (group,) = body["groups"]
    assert (group["domain"], group["site"], group["pending_items"]) == (
        "example.com",
        "example.com",
        3,
    )
    assert {c["code"] for c in group["failed"]} == {"workers", "proxies"}


def test_a_queued_mission_that_fits_says_it_is_ready(viewer_api: APIClient) -> None:
    br_residential_site()
    factories.ProxyFactory(type="residential", country="BR")
    factories.WorkerFactory(max_sessions=8)
    mission = factories.MissionFactory(n_items=3)

    body = viewer_api.get(f"/api/missions/{mission.pk}/explain/").json()

    assert body["failed"] == [] and body["groups"][0]["failed"] == []
    assert body["sessions_possible"] == 1
    assert body["summary"].startswith("pronta para alocar (1 sessões possíveis")


def test_learned_proxy_blocks_and_backoff_and_pause_are_explained(viewer_api: APIClient) -> None:
    now = timezone.now()
    br_residential_site()
    proxy = factories.ProxyFactory(type="residential", country="BR")
    factories.WorkerFactory()
    ProxyDomainHealth.objects.create(
        proxy=proxy,
        domain="example.com",
        score=3,
        blocked_until=now + dt.timedelta(minutes=30),
        updated_at=now,
    )
    mission = factories.MissionFactory(
        n_items=2, attempt=2, next_attempt_at=now + dt.timedelta(minutes=1)
    )
    actions.set_paused(True)

    body = viewer_api.get(f"/api/missions/{mission.pk}/explain/").json()

    codes = [c["code"] for c in body["failed"]]
    assert codes == ["paused", "backoff"]
    assert "1 de 1 bloqueados pela saúde proxy x site em example.com" in body["summary"]
    assert "aguardando a tentativa 2" in body["summary"]


def test_running_mission_explains_items_no_live_session_can_take(
    viewer_api: APIClient,
) -> None:
    factories.WriterFactory(is_default=True)
    factories.SiteConfigFactory(domain="*", proxy_types=["datacenter"], countries=[])
    factories.SiteConfigFactory(domain="shop.com.br", proxy_types=["residential"], countries=[])
    factories.WorkerFactory()
    mission = factories.MissionFactory(status=MissionStatus.EXTRAINDO, n_items=0)
    actions_urls = ["https://example.com/a", "https://shop.com.br/b", "https://shop.com.br/c"]
    for url in actions_urls:
        factories.MissionItemFactory(mission=mission, url=url)
    Mission.objects.filter(pk=mission.pk).update(total_items=3)
    factories.BrowserSessionFactory(
        mission=mission, status="ready", proxy=factories.ProxyFactory(type="datacenter")
    )

    body = viewer_api.get(f"/api/missions/{mission.pk}/explain/").json()

    groups = {g["domain"]: g for g in body["groups"]}
    assert set(groups) == {"example.com", "shop.com.br"}
    assert groups["shop.com.br"]["pending_items"] == 2
    (failed,) = groups["shop.com.br"]["failed"]
    assert failed["code"] == "distribution"
    assert "2 itens: nenhuma sessão ativa com o tipo de proxy exigido" in failed["message"]
    assert groups["example.com"]["failed"] == []


def test_terminal_missions_wait_for_nothing(viewer_api: APIClient) -> None:
    mission = factories.MissionFactory(status=MissionStatus.FINALIZADO)
    body = viewer_api.get(f"/api/missions/{mission.pk}/explain/").json()
    assert body["waiting"] is False
    assert viewer_api.get("/api/missions/999999/explain/").status_code == 404


def test_dry_run_answers_for_a_hypothetical_mission_and_writes_nothing(
    viewer_api: APIClient,
) -> None:
    factories.WriterFactory(is_default=True)
    factories.SiteConfigFactory(domain="*", proxy_types=["datacenter"], max_sessions=4)
    factories.ProxyFactory.create_batch(3, type="datacenter", country="BR")
    factories.WorkerFactory(max_sessions=8, active_sessions=6)
    before = (Mission.objects.count(), BrowserSession.objects.count(), MissionEvent.objects.count())

    fits = viewer_api.post(
        "/api/allocation/dry-run/",
        {"domain": "www.Loja.com", "url_count": 500, "site": {"items_per_job": 50}},
        format="json",
    )
    no_geo = viewer_api.post(
        "/api/allocation/dry-run/",
        {"domain": "loja.com", "url_count": 10, "site": {"countries": ["us"]}},
        format="json",
    )

    assert fits.status_code == 200, fits.content
    assert fits.json()["waiting"] is False
    # min(site max 4, 500/50 wanted, 2 free worker slots, 3 proxies)
    assert fits.json()["sessions_possible"] == 2
    assert fits.json()["groups"][0]["domain"] == "loja.com"
    assert no_geo.json()["waiting"] is True
    assert no_geo.json()["summary"] == "nenhum proxy datacenter US cadastrado"
    after = (Mission.objects.count(), BrowserSession.objects.count(), MissionEvent.objects.count())
    assert before == after
    assert SiteConfig.objects.get(domain="*").countries == []


def test_dry_run_validates_and_needs_a_login(viewer_api: APIClient, anon_api: APIClient) -> None:
    bad = viewer_api.post("/api/allocation/dry-run/", {"domain": "", "url_count": 0}, format="json")
    assert bad.status_code == 400
    assert set(bad.json()["error"]["fields"]) == {"domain", "url_count"}
    assert anon_api.post("/api/allocation/dry-run/", {}, format="json").status_code in (401, 403)


def test_explain_follows_the_engine_until_the_mission_runs(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    fleet = build_fleet(fake_worker, fake_writer, n_proxies=2)
    later = timezone.now() + dt.timedelta(hours=1)
    Proxy.objects.update(status=ProxyStatus.COOLDOWN, cooldown_until=later)
    mission = actions.create_mission(
        name="Espera", urls=[f"https://example.com/{i}" for i in range(6)]
    )

    fleet.step()
    mission.refresh_from_db()
    waiting = explain.explain_mission(mission)

    assert mission.status == MissionStatus.QUEUED
    assert mission.wait_reason.startswith("ALLOC_NO_PROXY")
    assert waiting.waiting
    assert waiting.summary == "nenhuma sessão com proxy datacenter: 2 em cooldown"

    Proxy.objects.update(status=ProxyStatus.AVAILABLE, cooldown_until=None)
    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO)
    assert explain.explain_mission(mission).waiting is False


def test_mission_page_and_list_tooltip_say_why(client: Client) -> None:
    client.force_login(factories.UserFactory(role="viewer"))
    br_residential_site()
    factories.WorkerFactory(max_sessions=2, active_sessions=2)
    mission = factories.MissionFactory(n_items=2)
    factories.MissionFactory(status=MissionStatus.FINALIZADO)

    page = client.get(f"/missoes/{mission.pk}/").content.decode()
    rows = client.get("/missoes/").content.decode()

    assert "Por que está esperando?" in page
    assert "workers sem capacidade (2/2)" in page
    assert rows.count("data-explain") == 1
    assert (
        'title="Por que está esperando? workers sem capacidade (2/2); '
        "nenhum proxy residencial BR cadastrado" in rows
    )


def test_a_disabled_strategy_falls_back_to_the_default_in_allocation_and_explain(
    viewer_api: APIClient,
) -> None:
    from orchestrator import allocation

    factories.WriterFactory(is_default=True)
    factories.SiteConfigFactory(domain="*", proxy_types=[], countries=[], max_sessions=2)
    factories.SiteConfigFactory(
        domain="example.com", proxy_types=["residential"], countries=["BR"], enabled=False
    )
    factories.WorkerFactory(max_sessions=4)
    mission = factories.MissionFactory(n_items=3)

    # Both read the one lookup: the disabled strategy is set aside for `*`.
    assert SiteConfig.for_domain("example.com").rule_domain == "*"  # type: ignore[attr-defined]
    assert allocation.SiteCache().get("example.com").rule_domain == "*"  # type: ignore[attr-defined]
    body = viewer_api.get(f"/api/missions/{mission.pk}/explain/").json()
    assert body["failed"] == [] and body["sessions_possible"] >= 1
    assert body["summary"].startswith("pronta para alocar")
