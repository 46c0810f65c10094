"""Proxy x site health: learned from results, shared in the database, used by
allocation; sessions retire by error score, usage and age."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from orchestrator import actions, events, proxy_health
from orchestrator.models import BrowserSession, MissionEvent, ProxyDomainHealth
from orchestrator.states import MissionStatus, SessionStatus
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


@dataclass
class R:
    status: str
    error_code: str | None = None


def ok(n: int) -> list[R]:
    return [R("ok") for _ in range(n)]


def bad(n: int, code: str = "blocked") -> list[R]:
    return [R("error", code) for _ in range(n)]


@pytest.fixture
def session() -> BrowserSession:
    return factories.BrowserSessionFactory(status="ready")


def health(s: BrowserSession) -> ProxyDomainHealth:
    return ProxyDomainHealth.objects.get(proxy_id=s.proxy_id, domain="example.com")


def test_three_failures_block_the_proxy_for_the_site_with_the_reason(
    session: BrowserSession,
) -> None:
    cfg = config.load()
    proxy_health.record(session, "www.example.com", bad(2) + ok(1), NOW, cfg)
    assert health(session).score == 1.5 and not health(session).is_blocked(NOW)

    proxy_health.record(session, "example.com", bad(1, "timeout") + bad(1, "proxy_error"), NOW, cfg)

    row = health(session)
    assert row.score == 3.5
    assert row.blocked_until == NOW + dt.timedelta(minutes=30)
    assert "1 proxy_error, 1 timeout" in row.blocked_reason
    assert proxy_health.blocked_external_ids("example.com", NOW) == [session.proxy_external_id]
    assert proxy_health.blocked_external_ids("other.com", NOW) == []
    event = MissionEvent.objects.get(mission=session.mission)
    assert "bloqueado para example.com por 30 min" in event.message


def test_successes_lower_the_score_never_below_zero_and_other_errors_do_not_count(
    session: BrowserSession,
) -> None:
    cfg = config.load()
    proxy_health.record(session, "example.com", bad(1) + ok(10) + bad(3, "parse_error"), NOW, cfg)
    row = health(session)
    assert (row.score, row.successes, row.failures) == (0.0, 10, 1)
    session.refresh_from_db()
    assert session.error_score == 0.0


def test_threshold_and_time_box_come_from_config(session: BrowserSession) -> None:
    config.set_value("proxy_health_threshold", 5)
    config.set_value("proxy_health_block_s", 60)
    cfg = config.load()
    proxy_health.record(session, "example.com", bad(4), NOW, cfg)
    assert not health(session).is_blocked(NOW)
    proxy_health.record(session, "example.com", bad(1), NOW, cfg)
    assert health(session).blocked_until == NOW + dt.timedelta(seconds=60)


def test_after_the_time_box_one_probe_failure_blocks_again_and_a_success_lifts(
    session: BrowserSession,
) -> None:
    cfg = config.load()
    proxy_health.record(session, "example.com", bad(3), NOW, cfg)
    later = NOW + dt.timedelta(minutes=31)
    assert proxy_health.blocked_external_ids("example.com", later) == []

    proxy_health.record(session, "example.com", bad(1), later, cfg)
    assert health(session).is_blocked(later)  # the probe failed

    while_blocked = later + dt.timedelta(minutes=1)
    proxy_health.record(session, "example.com", ok(1), while_blocked, cfg)
    row = health(session)
    assert not row.is_blocked(while_blocked)  # a success lifts it
    assert row.score < cfg.proxy_health_threshold
    assert row.blocked_reason == ""


def test_allocation_skips_proxies_blocked_for_the_mission_domain(
    viewer_api: APIClient,
) -> None:
    factories.WriterFactory(is_default=True)
    factories.WorkerFactory()
    factories.SiteConfigFactory(domain="*", proxy_types=["datacenter"], max_sessions=1)
    only = factories.ProxyFactory(type="datacenter")
    ProxyDomainHealth.objects.create(
        proxy=only,
        domain="example.com",
        score=3,
        blocked_until=timezone.now() + dt.timedelta(minutes=30),
        blocked_reason="pontuação 3",
        updated_at=timezone.now(),
    )
    blocked = actions.create_mission(name="Bloqueada", urls=["https://example.com/1"])
    elsewhere = actions.create_mission(name="Outro site", urls=["https://other.com/1"])
    from orchestrator.managers.missions import MissionManager

    MissionManager("t").tick()

    blocked.refresh_from_db()
    elsewhere.refresh_from_db()
    assert blocked.status == MissionStatus.QUEUED
    assert elsewhere.status == MissionStatus.ATRIBUIDO
    summary = viewer_api.get(f"/api/missions/{blocked.pk}/explain/").json()["summary"]
    assert "bloqueados pela saúde proxy x site em example.com" in summary


def test_the_engine_learns_a_blocking_proxy_and_moves_the_site_off_it(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    fleet = build_fleet(fake_worker, fake_writer, n_proxies=3, max_sessions=2)
    fake_worker.blocked_proxies = {"px-0"}
    mission = actions.create_mission(
        name="Aprende", urls=[f"https://example.com/p/{i}" for i in range(30)]
    )

    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO, max_rounds=150)

    assert mission.done_items == 30
    row = ProxyDomainHealth.objects.get(proxy__external_id="px-0", domain="example.com")
    assert row.failures >= 3 and row.blocked_until is not None
    blocked_at = row.blocked_until - dt.timedelta(seconds=config.load().proxy_health_block_s)
    late = BrowserSession.objects.filter(
        mission=mission, proxy_external_id="px-0", created_at__gt=blocked_at
    )
    assert not late.exists()
    good = ProxyDomainHealth.objects.exclude(proxy__external_id="px-0")
    assert all(h.score == 0 and h.blocked_until is None for h in good)


def test_sessions_retire_by_error_score_usage_and_age() -> None:
    now = timezone.now()
    fresh = factories.BrowserSessionFactory(status="ready", opened_at=now)
    errors = factories.BrowserSessionFactory(status="ready", opened_at=now, error_score=3)
    used = factories.BrowserSessionFactory(status="ready", opened_at=now, items_done=50)
    old = factories.BrowserSessionFactory(status="ready", opened_at=now - dt.timedelta(minutes=51))
    busy = factories.BrowserSessionFactory(
        status="busy", opened_at=now, error_score=9, job_key="j1"
    )

    assert proxy_health.retire_sessions(now) == 3

    statuses = dict(BrowserSession.objects.values_list("pk", "status"))
    assert statuses[fresh.pk] == SessionStatus.READY
    assert statuses[busy.pk] == SessionStatus.BUSY
    assert {statuses[s.pk] for s in (errors, used, old)} == {SessionStatus.CLOSING}
    reasons = list(MissionEvent.objects.order_by("id").values_list("message", flat=True))
    assert any("pontuação de erro 3" in m for m in reasons)
    assert any("50 usos" in m for m in reasons)
    assert any("idade acima de 50 min" in m for m in reasons)


def test_api_lists_and_lifts_and_dashboard_shows_blocks(
    admin_api: APIClient, viewer_api: APIClient, operator_api: APIClient, client: Client
) -> None:
    proxy = factories.ProxyFactory(external_id="res-1", type="residential", country="BR")
    now = timezone.now()
    row = ProxyDomainHealth.objects.create(
        proxy=proxy,
        domain="example.com",
        score=4,
        failures=4,
        blocked_until=now + dt.timedelta(minutes=30),
        blocked_reason="pontuação 4 >= 3",
        updated_at=now,
    )

    listed = viewer_api.get("/api/proxy-health/?blocked=true&domain=www.example.com").json()
    assert [(r["proxy"], r["blocked"], r["score"]) for r in listed["results"]] == [
        ("res-1", True, 4.0)
    ]
    assert "password" not in str(listed)
    client.force_login(factories.UserFactory(role="viewer"))
    page = client.get("/execucao/").content.decode()
    assert "data-proxy-health" in page and "res-1" in page

    assert operator_api.post(f"/api/proxy-health/{row.pk}/lift/").status_code == 403
    lifted = admin_api.post(f"/api/proxy-health/{row.pk}/lift/")
    assert lifted.status_code == 200 and lifted.json()["blocked"] is False
    assert viewer_api.get("/api/proxy-health/?blocked=true").json()["results"] == []


def test_a_session_on_a_proxy_blocked_for_the_site_gets_no_more_jobs(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    """Issue #15 case 4: the only proxy blocks every page; good proxies arrive a second
    later. The session on the blocked proxy is replaced, not fed, and every item ends
    done on the good proxies."""
    fleet = build_fleet(fake_worker, fake_writer, n_proxies=1, items_per_job=2, max_sessions=1)
    fake_worker.blocked_proxies = {"px-0"}
    mission = actions.create_mission(
        name="Bloqueado", urls=[f"https://example.com/p/{i}" for i in range(30)]
    )
    fleet.drive(
        lambda: ProxyDomainHealth.objects.filter(blocked_until__isnull=False).exists(),
        max_rounds=40,
        what="px-0 blocked for the site",
    )
    for i in (1, 2):
        factories.ProxyFactory(external_id=f"px-{i}", type="datacenter", country="BR")

    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO, MissionStatus.ERRO, max_rounds=150)

    assert (mission.status, mission.done_items) == (MissionStatus.FINALIZADO, 30)
    assert fake_writer.stored_count(mission.pk) == 30
    row = ProxyDomainHealth.objects.get(proxy__external_id="px-0", domain="example.com")
    assert row.blocked_until is not None
    blocked_at = row.blocked_until - dt.timedelta(seconds=config.load().proxy_health_block_s)
    px0_keys = set(
        BrowserSession.objects.filter(mission=mission, proxy_external_id="px-0").values_list(
            "session_key", flat=True
        )
    )
    started_on_px0 = [
        e
        for e in MissionEvent.objects.filter(
            mission=mission, kind=MissionEvent.Kind.JOB, created_at__gt=blocked_at
        )
        if "iniciado" in e.message and str(e.data.get("job_key", "")).rsplit("-j", 1)[0] in px0_keys
    ]
    assert started_on_px0 == []
    assert not BrowserSession.objects.filter(
        mission=mission, proxy_external_id="px-0", created_at__gt=blocked_at
    ).exists()


def test_the_dispatcher_retires_a_ready_session_whose_proxy_got_blocked(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    """The block was learned elsewhere (another session, another mission): the READY
    session on that proxy has a clean error score, and the dispatcher reaches it before
    `retire_sessions` does. It gets no job; it is retired and replaced."""
    fleet = build_fleet(fake_worker, fake_writer, n_proxies=2, items_per_job=2, max_sessions=1)
    mission = actions.create_mission(
        name="Corrida", urls=[f"https://example.com/p/{i}" for i in range(6)]
    )
    orch = fleet.orchestrator
    ready = BrowserSession.objects.filter(mission=mission, status=SessionStatus.READY)
    for _ in range(10):
        fake_worker.tick()
        orch.run_tick("missions")
        orch.run_tick("sessions")
        if ready.exists():
            break
    s = ready.get()
    assert s.job_key == "" and s.error_score == 0
    ProxyDomainHealth.objects.create(
        proxy_id=s.proxy_id,
        domain="example.com",
        score=10,
        blocked_until=timezone.now() + dt.timedelta(minutes=30),
        blocked_reason="pontuação 10 >= 3",
        updated_at=timezone.now(),
    )

    orch.run_tick("workers")

    s.refresh_from_db()
    assert (s.status, s.phase, s.job_key, s.locked_by) == (SessionStatus.CLOSING, "retired", "", "")
    assert not mission.items.filter(session=s).exists()
    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO, max_rounds=60)
    assert mission.done_items == 6
    assert not BrowserSession.objects.filter(
        mission=mission, proxy_id=s.proxy_id, pk__gt=s.pk
    ).exists()


def test_items_failed_on_every_live_proxy_wait_for_a_session_being_opened_elsewhere() -> None:
    """The dispatcher's "retry anyway" path hands an item back to a proxy it already
    failed on only when no session on a proxy it has not tried is being opened."""
    from orchestrator.managers.dispatch import JobDispatch

    site = factories.SiteConfigFactory.build(
        domain="*", proxy_types=["datacenter"], items_per_job=2
    )
    live = [
        BrowserSession(pk=1, proxy_external_id="px-0", proxy_type="datacenter", proxy_country="BR")
    ]
    pending = [(10, "https://example.com/1", ["px-0"]), (11, "https://example.com/2", [])]

    assert JobDispatch._distribute(live, pending, site, {"px-1"}) == {1: [11]}
    assert JobDispatch._distribute(live, pending, site, {"px-0"}) == {1: [11, 10]}
    assert JobDispatch._distribute(live, pending, site) == {1: [11, 10]}


def test_a_busy_session_whose_proxy_got_blocked_is_replaced_at_once_and_closed_after_its_job(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    """Issue #15 case 4: the block is learned while the session runs a job. The session
    is marked for retirement (it stays BUSY with its job), its replacement is requested
    on the other proxy in the same SessionManager tick although the site allows one
    session, and once the job ends the marked session gets no job and is closed."""
    fleet = build_fleet(fake_worker, fake_writer, n_proxies=2, items_per_job=2, max_sessions=1)
    fake_worker.jobs_paused = True
    mission = actions.create_mission(
        name="Ocupada", urls=[f"https://example.com/p/{i}" for i in range(6)]
    )
    busy = BrowserSession.objects.filter(mission=mission, status=SessionStatus.BUSY)
    fleet.drive(busy.exists, max_rounds=30, what="a busy session")
    s = busy.get()
    ProxyDomainHealth.objects.create(
        proxy_id=s.proxy_id,
        domain="example.com",
        score=10,
        blocked_until=timezone.now() + dt.timedelta(minutes=30),
        blocked_reason="pontuação 10 >= 3",
        updated_at=timezone.now(),
    )

    fleet.orchestrator.run_tick("sessions")

    s.refresh_from_db()
    assert (s.status, s.retire_reason, s.job_seq) == (
        SessionStatus.BUSY,
        "proxy bloqueado para o site",
        1,
    )
    others = BrowserSession.objects.filter(mission=mission).exclude(pk=s.pk)
    assert [(o.status, o.proxy_external_id) for o in others] == [
        (SessionStatus.REQUESTED, next(p for p in ("px-0", "px-1") if p != s.proxy_external_id))
    ]
    assert MissionEvent.objects.filter(
        mission=mission, message__contains="será aposentada ao fim do job atual"
    ).exists()

    fake_worker.jobs_paused = False
    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO, max_rounds=60)

    s.refresh_from_db()
    assert s.job_seq == 1 and s.status in (SessionStatus.CLOSING, SessionStatus.CLOSED)
    assert mission.done_items == 6 and fake_writer.stored_count(mission.pk) == 6
    assert not BrowserSession.objects.filter(
        mission=mission, proxy_id=s.proxy_id, pk__gt=s.pk
    ).exists()


def test_an_item_that_failed_on_the_only_session_proxy_waits_for_a_session_on_another(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    """Issue #15 case 4, the "retry anyway" path: one item fails (`proxy_error`) on the
    proxy of the mission's only session; another fitting proxy exists. The item is not
    handed back to that proxy: it waits, the session is retired once no pending item may
    use it, and a session on the other proxy takes the item."""
    fleet = build_fleet(fake_worker, fake_writer, n_proxies=2, items_per_job=2, max_sessions=1)
    urls = [f"https://example.com/p/{i}" for i in range(6)]
    fake_worker.jobs_paused = True
    mission = actions.create_mission(name="Outro proxy", urls=urls)
    fleet.drive(
        lambda: BrowserSession.objects.filter(mission=mission).exists(),
        max_rounds=10,
        what="a session",
    )
    first = BrowserSession.objects.get(mission=mission)
    fake_worker.fail_on_proxy = {first.proxy_external_id: {urls[0]: "proxy_error"}}
    fake_worker.jobs_paused = False

    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO, MissionStatus.ERRO, max_rounds=80)

    assert (mission.status, mission.done_items, mission.failed_items) == (
        MissionStatus.FINALIZADO,
        6,
        0,
    )
    item = mission.items.get(url=urls[0])
    assert (item.status, item.attempts, item.failed_proxies) == (
        "done",
        2,
        [first.proxy_external_id],
    )
    assert item.session is not None
    assert item.session.proxy_external_id != first.proxy_external_id
    first.refresh_from_db()
    assert first.status in (SessionStatus.CLOSING, SessionStatus.CLOSED)
    assert first.error_code == ""  # retired, not failed: no rotation spent
    assert mission.session_rotations == 0


def test_items_failed_on_every_live_proxy_wait_while_an_untried_fitting_proxy_exists() -> None:
    """`_distribute` holds an item that failed on every live session's proxy while a
    fitting proxy it has not tried exists (a session on it will be asked for), and
    retries it on a failed proxy only when no such proxy exists."""
    from orchestrator.managers.dispatch import JobDispatch

    site = factories.SiteConfigFactory.build(
        domain="*", proxy_types=["datacenter"], items_per_job=2
    )
    live = [
        BrowserSession(pk=1, proxy_external_id="px-0", proxy_type="datacenter", proxy_country="BR")
    ]
    pending = [(10, "https://example.com/1", ["px-0"]), (11, "https://example.com/2", [])]
    held: list[int] = []

    assert JobDispatch._distribute(
        live, pending, site, fitting=lambda: {"px-0", "px-1"}, held=held
    ) == {1: [11]}
    assert held == [10]
    assert JobDispatch._distribute(live, pending, site, fitting=lambda: {"px-0"}) == {1: [11, 10]}


@pytest.mark.parametrize("max_sessions", [3, 1])
def test_replenish_asks_for_a_session_on_a_proxy_an_item_stuck_on_every_live_one_has_not_tried(
    fake_worker: FakeWorker, fake_writer: FakeWriter, max_sessions: int
) -> None:
    """An item failed on the proxy of the mission's only session, which still has work:
    when the site allows another session, one is asked for at once on a proxy the item
    has not tried; at the site's limit, none (the dispatcher retires the session once no
    pending item may use it)."""
    from orchestrator import allocation

    fleet = build_fleet(
        fake_worker, fake_writer, n_proxies=3, items_per_job=5, max_sessions=max_sessions
    )
    fake_worker.jobs_paused = True
    mission = actions.create_mission(
        name="Preso", urls=[f"https://example.com/p/{i}" for i in range(2)]
    )
    busy = BrowserSession.objects.filter(mission=mission, status=SessionStatus.BUSY)
    fleet.drive(busy.exists, max_rounds=30, what="a busy session")
    s = busy.get()
    stuck = mission.items.order_by("id").first()
    assert stuck is not None
    mission.items.filter(pk=stuck.pk).update(
        status="pending", session=None, job_key="", failed_proxies=[s.proxy_external_id]
    )

    requested = allocation.replenish_sessions("test", timezone.now(), config.load())

    others = BrowserSession.objects.filter(mission=mission).exclude(pk=s.pk)
    if max_sessions == 1:
        assert requested == 0 and not others.exists()
        return
    assert requested == 1
    assert [o.status for o in others] == [SessionStatus.REQUESTED]
    assert others.get().proxy_external_id not in ("", s.proxy_external_id)


def test_an_item_that_failed_on_every_fitting_proxy_gets_a_session_when_none_is_live(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    """The stall of the demo end-to-end run: the last pending item failed on both
    proxies there are, and the mission's sessions had all closed (retired for usage).
    No proxy it has not tried exists, so a session is asked for on one it has tried:
    the item takes its last attempt there instead of waiting for ever."""
    from orchestrator import allocation

    fleet = build_fleet(fake_worker, fake_writer, n_proxies=2, items_per_job=5, max_sessions=1)
    fake_worker.jobs_paused = True
    mission = actions.create_mission(name="Sem proxy novo", urls=["https://example.com/p/0"])
    busy = BrowserSession.objects.filter(mission=mission, status=SessionStatus.BUSY)
    fleet.drive(busy.exists, max_rounds=30, what="a busy session")
    mission.items.update(
        status="pending", session=None, job_key="", attempts=2, failed_proxies=["px-0", "px-1"]
    )
    BrowserSession.objects.filter(mission=mission).update(status=SessionStatus.CLOSED)

    requested = allocation.replenish_sessions("test", timezone.now(), config.load())

    assert requested == 1
    opened = BrowserSession.objects.filter(mission=mission, status=SessionStatus.REQUESTED)
    assert [s.proxy_external_id in ("px-0", "px-1") for s in opened] == [True]


def test_an_item_blocked_on_three_proxies_is_done_on_the_fourth_past_its_attempts(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    """Issue #15 case 4: proxies that failed an item never spend its attempts for good
    while a fitting proxy it has not tried exists; one blocked on every proxy fails
    once it has tried them all."""
    fleet = build_fleet(fake_worker, fake_writer, n_proxies=4, items_per_job=2, max_sessions=1)
    urls = ["https://example.com/p/ok", "https://example.com/p/everywhere"]
    fake_worker.fail_on_proxy = {
        f"px-{n}": {urls[0]: "proxy_error", urls[1]: "proxy_error"} for n in range(3)
    }
    fake_worker.fail_on_proxy["px-3"] = {urls[1]: "proxy_error"}
    mission = actions.create_mission(name="Quarto proxy", urls=urls)

    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO, MissionStatus.ERRO, max_rounds=150)

    done, everywhere = mission.items.get(url=urls[0]), mission.items.get(url=urls[1])
    assert (done.status, done.attempts, sorted(done.failed_proxies)) == (
        "done",
        4,
        ["px-0", "px-1", "px-2"],
    )
    assert done.session is not None and done.session.proxy_external_id == "px-3"
    assert (everywhere.status, everywhere.error_code, len(everywhere.failed_proxies)) == (
        "failed",
        "SCRAPE_PROXY_ERROR",
        4,
    )
    assert mission.status == MissionStatus.FINALIZADO
