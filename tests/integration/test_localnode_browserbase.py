"""The built-in worker's `browserbase` provider against a fake Browserbase on loopback
whose sessions are a real local Chromium reached over CDP."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from localnode import engines, remote, runner
from localnode.demo import demo_urls
from localnode.models import LocalResult, LocalSession
from orchestrator.managers.workers import WorkerManager
from registry import config
from registry.models import Worker
from tests import factories
from tests.fakes.browserbase import FakeBrowserbase, LocalChromium

pytestmark = [
    pytest.mark.urls("localnode.root_urls"),
    pytest.mark.browser,
    pytest.mark.skipif(
        engines.browser_unavailable_reason() is not None,
        reason=f"browser engine unavailable: {engines.browser_unavailable_reason()}",
    ),
]

BASE = "/local/worker/api/v1"
BB_KEY = "bb_live_secret_key_123"
PROJECT = "proj-mc"


@pytest.fixture(scope="module")
def chromium() -> Iterator[LocalChromium]:
    browser = LocalChromium()
    yield browser
    browser.stop()


@pytest.fixture
def fake(chromium: LocalChromium, settings: Any) -> Iterator[FakeBrowserbase]:
    server = FakeBrowserbase(api_key=BB_KEY, project_id=PROJECT, connect_url=chromium.ws_url)
    server.start()
    settings.BROWSERBASE_API_KEY = BB_KEY
    settings.BROWSERBASE_PROJECT_ID = PROJECT
    settings.BROWSERBASE_BASE_URL = server.root_url
    yield server
    server.stop()


def post(path: str, body: Any) -> Any:
    return Client().post(BASE + path, json.dumps(body), content_type="application/json")


def open_bb(key: str = "m1-a1-s1", **extra: Any) -> Any:
    return post("/sessions", {"session_key": key, "provider": "browserbase", **extra})


@pytest.mark.django_db
def test_health_offers_browserbase_only_when_configured(
    fake: FakeBrowserbase, settings: Any
) -> None:
    assert Client().get(BASE + "/health").json()["providers"] == ["local", "browserbase"]
    settings.BROWSERBASE_PROJECT_ID = ""
    assert Client().get(BASE + "/health").json()["providers"] == ["local"]
    refused = open_bb()
    assert refused.status_code == 422 and "provider" in refused.json()["error"]["fields"]
    assert fake.created == []


@pytest.mark.django_db(transaction=True)
def test_a_job_runs_over_cdp_and_closing_releases_the_session(
    fake: FakeBrowserbase, live_server: Any
) -> None:
    proxy = {"id": "px-1", "type": "residential", "url": "http://us%40r:p%3Ass@10.0.0.7:8000"}
    opened = open_bb(proxy=proxy, timeout_s=600)
    assert opened.status_code == 201, opened.content
    session = opened.json()
    assert session["status"] == "ready" and session["provider"] == "browserbase"
    assert session["provider_session_id"] == "bb-0001"
    assert "connect" not in json.dumps(session).lower()  # the signed URL stays inside
    sent = fake.created[0]
    assert sent["projectId"] == PROJECT and sent["keepAlive"] is True
    assert sent["userMetadata"] == {"mc_session_key": "m1-a1-s1"}
    assert sent["timeout"] == 600
    assert sent["proxies"] == [
        {
            "type": "external",
            "server": "http://10.0.0.7:8000",
            "username": "us@r",
            "password": "p:ss",
        }
    ]
    items = [{"item_id": str(i), "url": u} for i, u in enumerate(demo_urls(live_server.url, 2))]
    job = post(f"/sessions/{session['id']}/jobs", {"job_key": "m1-a1-s1-j1", "items": items})
    assert job.status_code == 202, job.content
    assert runner.run_pending_jobs() == 1
    results = list(LocalResult.objects.order_by("sequence"))
    assert [(r.status, r.http_status) for r in results] == [("ok", 200), ("ok", 200)]
    assert all(r.data.get("title") for r in results)
    assert fake.running == ["bb-0001"]  # kept alive between jobs
    assert Client().delete(f"{BASE}/sessions/{session['id']}").status_code == 204
    assert fake.released == ["bb-0001"] and fake.running == []
    assert LocalSession.objects.get().remote_released_at is not None


@pytest.mark.django_db
def test_a_managed_proxy_asks_browserbase_for_its_country(fake: FakeBrowserbase) -> None:
    proxy = {"id": "bb-res-br", "type": "browserbase", "country": "br"}
    assert open_bb(proxy=proxy).status_code == 201
    assert fake.created[0]["proxies"] == [{"type": "browserbase", "geolocation": {"country": "BR"}}]


@pytest.mark.django_db
def test_browserbase_full_is_409_capacity_and_leaves_no_session(fake: FakeBrowserbase) -> None:
    fake.limit = 0
    full = open_bb()
    assert full.status_code == 409 and full.json()["error"]["code"] == "capacity_exhausted"
    assert not LocalSession.objects.exists()
    fake.limit = None
    assert open_bb().status_code == 201  # the same key, once there is room


@pytest.mark.django_db
def test_browserbase_down_is_a_transient_503(fake: FakeBrowserbase) -> None:
    fake.fail_next_requests(1, 502)
    down = open_bb()
    assert down.status_code == 503 and down.json()["error"]["code"] == "provider_unavailable"
    assert not LocalSession.objects.exists()
    assert Client().get(BASE + "/health").json()["status"] == "ok"


@pytest.mark.django_db
def test_a_wrong_key_degrades_the_worker_without_telling_the_key(
    fake: FakeBrowserbase, settings: Any
) -> None:
    settings.BROWSERBASE_API_KEY = "bb_live_wrong_key_999"
    refused = open_bb()
    assert refused.status_code == 503
    health = Client().get(BASE + "/health")
    assert health.json()["status"] == "degraded"
    assert "401" in health.json()["error"]["message"]
    for body in (refused.content, health.content):
        assert b"wrong_key" not in body and BB_KEY.encode() not in body
    settings.BROWSERBASE_API_KEY = BB_KEY
    assert open_bb().status_code == 201
    assert Client().get(BASE + "/health").json()["status"] == "ok"


@pytest.mark.django_db
def test_ended_sessions_are_released_and_orphans_reconciled(fake: FakeBrowserbase) -> None:
    now = timezone.now()
    first = open_bb("m1-a1-s1").json()
    open_bb("m1-a1-s2")
    # A session that failed or timed out locally is released by the housekeeping pass.
    LocalSession.objects.filter(session_key="m1-a1-s1").update(status="failed", closed_at=now)
    fake.fail_next_requests(1, 503)
    assert remote.release_ended(now) == 0  # Browserbase down: tried again later
    assert remote.release_ended(now + dt.timedelta(seconds=5)) == 1
    assert fake.released == [first["provider_session_id"]]
    # A worker restarted without its rows: the orphan at Browserbase is released, the
    # live one adopted.
    orphan = open_bb("m1-a1-s3").json()
    LocalSession.objects.filter(session_key="m1-a1-s3").delete()
    assert remote.reconcile(now) == 1
    assert fake.released[-1] == orphan["provider_session_id"]
    assert fake.running == ["bb-0002"]


@pytest.mark.django_db
def test_cancelling_a_session_with_a_queued_job_releases_it(fake: FakeBrowserbase) -> None:
    session = open_bb().json()
    items = [{"item_id": "1", "url": "https://example.com/p/1"}]
    assert (
        post(f"/sessions/{session['id']}/jobs", {"job_key": "j1", "items": items}).status_code
        == 202
    )
    assert Client().delete(f"{BASE}/sessions/{session['id']}").status_code == 204
    assert fake.released == [session["provider_session_id"]] and fake.running == []
    closed = Client().get(f"{BASE}/sessions/{session['id']}").json()
    assert closed["status"] == "closed"


@pytest.mark.django_db(transaction=True)
def test_the_orchestrator_sees_the_wrong_key_as_a_degraded_worker(
    fake: FakeBrowserbase, settings: Any, live_server: Any
) -> None:
    settings.BROWSERBASE_API_KEY = "bb_live_wrong_key_999"
    row = factories.WorkerFactory(
        base_url=f"{live_server.url}{BASE}", api_key="", providers=["local"]
    )
    assert open_bb().status_code == 503
    WorkerManager("test").check_health(timezone.now(), config.load())
    worker = Worker.objects.get(pk=row.pk)
    assert worker.health_status == "degraded"
    assert worker.providers == ["local", "browserbase"]
    assert "refused the API key" in worker.last_error and "wrong_key" not in worker.last_error


@pytest.mark.django_db
def test_the_runner_loop_reconciles_orphans_periodically_not_only_at_start(
    fake: FakeBrowserbase,
) -> None:
    """The worker's own loop (`Runner.tick`) looks for orphans at start and then every
    RECONCILE_EVERY; a row still `creating` (its remote id not recorded yet) is adopted
    by its session_key, not released under it."""
    loop = runner.Runner(name="t", max_workers=1)
    start = loop.reconcile_due  # due at once: the start pass
    try:
        loop.tick(start)  # the start pass: nothing to release yet
        open_bb("m1-a1-s1")
        orphan = open_bb("m1-a1-s2").json()
        LocalSession.objects.filter(session_key="m1-a1-s2").delete()
        # A row being created right now: Browserbase already has its browser.
        creating = open_bb("m1-a1-s3").json()
        LocalSession.objects.filter(session_key="m1-a1-s3").update(status="creating", remote_id="")
        loop.tick(start + runner.RECONCILE_EVERY / 2)
        assert fake.released == []  # not due yet
        loop.tick(start + runner.RECONCILE_EVERY)
        assert fake.released == [orphan["provider_session_id"]]
        assert set(fake.running) == {"bb-0001", creating["provider_session_id"]}
        # Its next pass comes one period later, by the same loop.
        LocalSession.objects.filter(session_key="m1-a1-s1").delete()
        loop.tick(start + runner.RECONCILE_EVERY * 1.5)
        assert "bb-0001" in fake.running
        loop.tick(start + runner.RECONCILE_EVERY * 2)
        assert "bb-0001" not in fake.running
    finally:
        loop.shutdown(wait=True)


@pytest.mark.django_db(transaction=True)
def test_the_sites_country_reaches_browserbase_for_a_managed_proxy(
    fake: FakeBrowserbase, live_server: Any
) -> None:
    """Allocation -> SessionManager -> the built-in worker -> Browserbase: a managed proxy
    with no country asks Browserbase for the site's country."""
    from django.db import transaction

    from orchestrator.allocation import Request, allocate_many
    from orchestrator.managers.sessions import SessionManager
    from orchestrator.models import BrowserSession

    factories.WorkerFactory(
        base_url=f"{live_server.url}{BASE}", api_key="", providers=["local", "browserbase"]
    )
    factories.ProxyFactory(type="browserbase", country="", external_id="bb-managed")
    site = factories.SiteConfigFactory(
        domain="example.com",
        providers=["browserbase"],
        proxy_types=["browserbase"],
        countries=["DE"],
        max_sessions=1,
    )
    mission = factories.MissionFactory(urls=["https://example.com/p/1"])
    now = timezone.now()
    with transaction.atomic():
        allocate_many([Request(mission, 1, site)], now)
    assert SessionManager("t").open_requested(now, config.load()) == 1
    assert fake.created[0]["proxies"] == [{"type": "browserbase", "geolocation": {"country": "DE"}}]
    session = BrowserSession.objects.get(mission=mission)
    assert (session.provider, session.proxy_country) == ("browserbase", "DE")
    assert session.provider_session_id == "bb-0001"


@pytest.mark.django_db(transaction=True)
def test_the_browserbase_inspector_link_comes_from_its_debug_endpoint(
    fake: FakeBrowserbase, live_server: Any
) -> None:
    """The worker asks Browserbase's debug endpoint for the live inspector; the
    orchestrator keeps it and the API shows the session's provider, its Browserbase id
    and that link (the pages: tests/integration/test_dashboard_session_provider.py)."""
    from django.db import transaction

    from orchestrator.allocation import Request, allocate_many
    from orchestrator.managers.sessions import SessionManager
    from orchestrator.models import BrowserSession

    factories.WorkerFactory(
        base_url=f"{live_server.url}{BASE}", api_key="", providers=["local", "browserbase"]
    )
    site = factories.SiteConfigFactory(
        domain="example.com", providers=["browserbase"], proxy_types=[], max_sessions=1
    )
    mission = factories.MissionFactory(urls=["https://example.com/p/1"])
    now = timezone.now()
    with transaction.atomic():
        allocate_many([Request(mission, 1, site)], now)
    assert SessionManager("t").open_requested(now, config.load()) == 1
    inspector = f"{fake.root_url}/devtools/inspector.html?session=bb-0001&fullscreen=1"
    assert ("GET /sessions/{id}/debug") in fake.route_counts
    session = BrowserSession.objects.get(mission=mission)
    assert (session.provider_session_id, session.provider_inspect_url) == ("bb-0001", inspector)

    from orchestrator.serializers import BrowserSessionSerializer

    api = BrowserSessionSerializer(session).data
    assert api["provider"] == "browserbase" and api["provider_session_id"] == "bb-0001"
    assert api["provider_inspect_url"] == inspector
