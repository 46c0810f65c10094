"""`SiteConfig.providers`: allocation only picks workers that offer a provider the site
accepts, sends that provider, and a mission no worker can serve waits with
ALLOC_NO_PROVIDER, explained in pt-BR."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from django.db import transaction

from orchestrator import events, explain
from orchestrator.allocation import Allocation, Request, allocate_many
from orchestrator.models import Mission
from orchestrator.states import ErrorCode
from registry.models import SiteConfig
from tests import factories

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _no_leftover_wakeups() -> Iterator[None]:
    yield
    events._pending.wake.clear()


def site(providers: list[str]) -> SiteConfig:
    return SiteConfig(domain="*", providers=providers, max_sessions=4)


def allocate(mission: Mission, n: int, config: SiteConfig) -> Allocation:
    with transaction.atomic():
        return allocate_many([Request(mission, n, config)], NOW)[0]


def test_a_browserbase_only_site_waits_until_a_worker_offers_it() -> None:
    factories.WorkerFactory(providers=["local"])
    mission = factories.MissionFactory()
    waiting = allocate(mission, 2, site(["browserbase"]))
    assert waiting.sessions == []
    assert waiting.wait_code == ErrorCode.ALLOC_NO_PROVIDER
    assert waiting.wait_reason == "nenhum worker disponível oferece browserbase"

    bb = factories.WorkerFactory(providers=["local", "browserbase"], max_sessions=8)
    served = allocate(mission, 2, site(["browserbase"]))
    assert [(s.worker_id, s.provider) for s in served.sessions] == [(bb.pk, "browserbase")] * 2


def test_any_provider_keeps_the_workers_first_and_preference_order_is_kept() -> None:
    worker = factories.WorkerFactory(providers=["local", "browserbase"])
    mission = factories.MissionFactory()
    assert allocate(mission, 1, site([])).sessions[0].provider == "local"
    assert allocate(mission, 1, site(["*"])).sessions[0].provider == "local"
    preferred = allocate(mission, 1, site(["browserbase", "local"]))
    assert preferred.sessions[0].provider == "browserbase"
    assert preferred.sessions[0].worker_id == worker.pk


def test_the_explainer_says_no_worker_offers_the_provider() -> None:
    factories.WriterFactory(is_default=True)
    factories.WorkerFactory(providers=["local"])
    factories.SiteConfigFactory(domain="example.com", providers=["browserbase"])
    mission = factories.MissionFactory(urls=["https://example.com/p/1"])
    exp = explain.explain_mission(mission)
    assert exp.waiting
    assert "nenhum worker oferece browserbase" in exp.summary


def test_managed_browserbase_proxies_serve_only_browserbase_sites() -> None:
    factories.WorkerFactory(providers=["local", "browserbase"])
    managed = factories.ProxyFactory(type="browserbase", country="BR", max_sessions=4)
    mission = factories.MissionFactory()
    any_site = SiteConfig(domain="*", max_sessions=1)
    assert allocate(mission, 1, any_site).sessions[0].proxy is None
    bb_site = SiteConfig(
        domain="*", providers=["browserbase"], proxy_types=["browserbase"], max_sessions=1
    )
    session = allocate(mission, 1, bb_site).sessions[0]
    assert (session.proxy, session.provider) == (managed, "browserbase")


def test_a_managed_proxy_without_a_country_takes_the_sites_country() -> None:
    """Browserbase geolocates its managed proxies on demand: a `browserbase` proxy with no
    country of its own serves a site of any country, and the session asks for the
    site's (first) country; a managed proxy pinned to another country does not fit."""
    factories.WorkerFactory(providers=["local", "browserbase"])
    factories.ProxyFactory(type="browserbase", country="US", max_sessions=4)
    managed = factories.ProxyFactory(type="browserbase", country="", max_sessions=4)
    mission = factories.MissionFactory()
    br_site = SiteConfig(
        domain="*",
        providers=["browserbase"],
        proxy_types=["browserbase"],
        countries=["BR", "PT"],
        max_sessions=4,
    )
    sessions = allocate(mission, 2, br_site).sessions
    assert [(s.proxy, s.proxy_country) for s in sessions] == [(managed, "BR")] * 2
