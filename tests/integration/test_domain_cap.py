"""The domain cap (`max_concurrent_sessions`) across missions: slots on sessions, the
database backstop, the fair share and the explanation in pt-BR."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from orchestrator import allocation, domain_slots, events
from orchestrator.allocation import Request, allocate_many
from orchestrator.explain import Explainer
from orchestrator.models import BrowserSession, DomainBreaker, MissionEvent
from registry import config
from registry.models import SiteConfig
from tests import factories

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _no_leftover_wakeups() -> Iterator[None]:
    yield
    events._pending.wake.clear()


def capped(cap: int, domain: str = "shop.com") -> SiteConfig:
    SiteConfig.objects.create(domain=domain, max_concurrent_sessions=cap, max_sessions=10)
    return SiteConfig.for_domain(domain)


def test_two_sessions_holding_the_same_domain_slot_are_refused_by_the_database() -> None:
    mission = factories.MissionFactory(domain="shop.com")
    factories.BrowserSessionFactory(
        mission=mission, domain="shop.com", domain_slot=0, holds_slot=True
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        factories.BrowserSessionFactory(
            mission=mission, domain="shop.com", domain_slot=0, holds_slot=True
        )


def test_the_cap_is_shared_fairly_and_the_rest_wait_with_the_reason() -> None:
    factories.WorkerFactory(max_sessions=20)
    site = capped(3)
    big, small = (factories.MissionFactory(domain="shop.com") for _ in range(2))

    with transaction.atomic():
        first = allocate_many([Request(big, 10, site), Request(small, 1, site)], NOW)

    assert [len(a.sessions) for a in first] == [2, 1]
    held = BrowserSession.objects.filter(holds_slot=True, domain="shop.com")
    assert sorted(s or 0 for s in held.values_list("domain_slot", flat=True)) == [0, 1, 2]

    third = factories.MissionFactory(domain="shop.com")
    with transaction.atomic():
        (waiting,) = allocate_many([Request(third, 1, site)], NOW)
    assert waiting.sessions == []
    assert waiting.wait_code == domain_slots.WAIT_CODE
    assert waiting.wait_reason == (
        "aguardando: limite do domínio, 3 de 3 sessões em uso por 2 missões"
    )

    # One of the big mission's sessions ends: its slot is free again, and the third
    # mission (below its share) gets it, not the big one.
    ended = held.filter(mission=big).first()
    assert ended is not None
    BrowserSession.objects.filter(pk=ended.pk).update(holds_slot=False, status="closed")
    with transaction.atomic():
        again = allocate_many([Request(big, 8, site), Request(third, 1, site)], NOW)
    assert [len(a.sessions) for a in again] == [0, 1]
    assert again[1].sessions[0].domain_slot == ended.domain_slot


def test_a_domain_without_cap_gets_no_slot_numbers() -> None:
    factories.WorkerFactory(max_sessions=20)
    mission = factories.MissionFactory(domain="free.com")
    with transaction.atomic():
        (got,) = allocate_many([Request(mission, 3, SiteConfig.for_domain("free.com"))], NOW)
    assert [s.domain_slot for s in got.sessions] == [None, None, None]
    assert {s.domain for s in got.sessions} == {"free.com"}


def test_the_cap_inherited_from_the_parent_domain_applies_to_each_subdomain() -> None:
    factories.WorkerFactory(max_sessions=20)
    capped(1, "example.com")
    site = SiteConfig.for_domain("shop.example.com")
    a, b = (factories.MissionFactory(domain="shop.example.com") for _ in range(2))
    with transaction.atomic():
        got = allocate_many([Request(a, 2, site), Request(b, 2, site)], NOW)
    assert [len(x.sessions) for x in got] == [1, 0]


def test_claiming_records_the_rule_that_applied() -> None:
    factories.WorkerFactory(max_sessions=20)
    factories.WriterFactory(is_default=True)
    SiteConfig.objects.create(domain="*", min_delay_ms=200)
    capped(2, "example.com")
    mission = factories.MissionFactory(domain="shop.example.com", n_items=3)

    allocation.claim_due_missions("test", timezone.now(), config.load())

    event = MissionEvent.objects.filter(mission=mission, data__has_key="site_rule").get()
    rule = event.data["site_rule"]
    assert rule["rule"] == "example.com"
    assert rule["max_concurrent_sessions"] == 2
    assert rule["inherited"]["min_delay_ms"] == "*"


def test_the_explanation_and_the_dry_run_name_the_domain_cap() -> None:
    factories.WorkerFactory(max_sessions=20)
    capped(2)
    holders = [factories.MissionFactory(domain="shop.com", status="EXTRAINDO") for _ in range(2)]
    for i, m in enumerate(holders):
        factories.BrowserSessionFactory(
            mission=m, domain="shop.com", domain_slot=i, holds_slot=True, status="busy"
        )
    waiting = factories.MissionFactory(domain="shop.com", n_items=2)

    explained = Explainer().mission(waiting)
    assert explained.waiting
    assert "aguardando: limite do domínio, 2 de 2 sessões em uso por 2 missões" in (
        explained.summary
    )
    dry = Explainer().hypothetical(domain="shop.com", url_count=10)
    assert dry.waiting
    assert "limite do domínio, 2 de 2 sessões" in dry.summary


def test_the_dashboard_shows_each_domain_against_its_cap(
    login: Callable[[str | None], Client],
) -> None:
    SiteConfig.objects.create(
        domain="shop.com",
        max_concurrent_sessions=2,
        min_delay_ms=500,
        max_requests_per_minute=30,
        respect_robots=False,
    )
    DomainBreaker.objects.create(
        domain="shop.com", state=DomainBreaker.State.OPEN, reason="bloqueios", updated_at=NOW
    )
    for i in range(2):
        mission = factories.MissionFactory(domain="shop.com", status="EXTRAINDO")
        factories.BrowserSessionFactory(
            mission=mission, domain="shop.com", domain_slot=i, holds_slot=True, status="busy"
        )
    html = login("viewer").get("/execucao/parcial/").content.decode()
    assert "Carga por domínio" in html
    row = html.split("data-domain-load", 1)[1]
    assert "shop.com" in row
    assert "2 de 2 (no limite)" in row
    assert "4000 ms entre requisições por sessão; até 30/min no domínio" in row
    assert "ignorado" in row
    assert "Pausado" in row


def test_the_api_the_dashboard_and_the_dry_run_name_the_cap_in_pt_br(
    viewer_api,  # type: ignore[no-untyped-def]
    login: Callable[[str | None], Client],
) -> None:
    """The three surfaces of "why is it waiting": GET /api/missions/{id}/explain/, the
    dashboard (mission page and the list's tooltip) and POST /api/allocation/dry-run/
    (which must see the cap the domain inherits), with pt-BR singular and plural."""
    factories.WorkerFactory(max_sessions=20)
    factories.WriterFactory(is_default=True)
    capped(4, "example.com")  # shop.example.com inherits the cap
    holders = [
        factories.MissionFactory(domain="shop.example.com", status="EXTRAINDO") for _ in range(2)
    ]
    for i in range(4):
        factories.BrowserSessionFactory(
            mission=holders[i % 2],
            domain="shop.example.com",
            domain_slot=i,
            holds_slot=True,
            status="busy",
        )
    waiting = factories.MissionFactory(domain="shop.example.com", n_items=2)
    words = "aguardando: limite do domínio, 4 de 4 sessões em uso por 2 missões"

    explained = viewer_api.get(f"/api/missions/{waiting.pk}/explain/").json()
    assert explained["waiting"] is True and words in explained["summary"]
    assert "(regra example.com)" in explained["summary"]

    dry = viewer_api.post(
        "/api/allocation/dry-run/", {"domain": "shop.example.com", "url_count": 5}, format="json"
    ).json()
    assert dry["waiting"] is True and words in dry["summary"]

    viewer = login("viewer")
    page = viewer.get(f"/missoes/{waiting.pk}/").content.decode()
    assert words in page
    listing = viewer.get("/missoes/").content.decode()
    assert f'title="Por que está esperando? {words}' in listing

    # Singular: a cap of one session held by one mission.
    capped(1, "solo.com")
    holder = factories.MissionFactory(domain="solo.com", status="EXTRAINDO")
    factories.BrowserSessionFactory(
        mission=holder, domain="solo.com", domain_slot=0, holds_slot=True, status="busy"
    )
    alone = factories.MissionFactory(domain="solo.com", n_items=1)
    summary = viewer_api.get(f"/api/missions/{alone.pk}/explain/").json()["summary"]
    assert "aguardando: limite do domínio, 1 de 1 sessão em uso por 1 missão" in summary
