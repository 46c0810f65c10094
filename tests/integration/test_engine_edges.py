"""Issue #15, case 7: small edges of the engine, each seen in an outside run."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from orchestrator import actions, leases, site_breaker
from orchestrator.clients.worker import WorkerClient
from orchestrator.managers.base import close_mission_sessions
from orchestrator.managers.sessions import SessionManager
from orchestrator.managers.workers import WorkerManager
from orchestrator.models import BrowserSession, DomainBreaker, Mission, MissionEvent
from orchestrator.runner import Orchestrator
from orchestrator.states import MissionStatus, SessionStatus
from registry import config
from registry.config import Config
from registry.models import Worker, Writer
from tests import factories
from tests.factories import OrchestratorInstanceFactory
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.integration.engine_helpers import build_fleet

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("worker_answers", [True, False])
def test_a_worker_deleted_while_its_health_probe_runs_does_not_fail_the_tick(
    fake_worker: FakeWorker, fake_writer: FakeWriter, worker_answers: bool
) -> None:
    build_fleet(fake_worker, fake_writer)
    if not worker_answers:
        fake_worker.down()

    def deleting_client(worker: Worker, cfg: Config) -> WorkerClient:
        Worker.objects.filter(pk=worker.pk).delete()  # through the API, meanwhile
        return WorkerClient.for_worker(worker, cfg)

    manager = WorkerManager("edges", worker_client=deleting_client)

    checked = manager.check_health(timezone.now(), config.load())

    assert not Worker.objects.exists()
    assert checked >= 1
    assert Writer.objects.get().last_checked_at is not None  # the rest of the tick ran


def test_the_sessions_of_a_finished_mission_are_closed_at_once_despite_a_live_lease(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    fleet = build_fleet(fake_worker, fake_writer)
    fake_worker.jobs_paused = True
    mission = actions.create_mission(name="Lease", urls=["https://example.com/a"])
    fleet.drive(lambda: BrowserSession.objects.filter(job_status="running").exists())
    session = BrowserSession.objects.get(mission=mission, job_status="running")
    # Another process holds the session's lease for a minute (collecting its results).
    BrowserSession.objects.filter(pk=session.pk).update(
        locked_by="other-process", locked_until=timezone.now() + timezone.timedelta(seconds=60)
    )

    close_mission_sessions(mission.pk, timezone.now())
    fleet.orchestrator.managers["sessions"].close_sessions(timezone.now(), config.load())

    session.refresh_from_db()
    assert session.status == SessionStatus.CLOSED
    assert not session.holds_slot
    assert fake_worker.sessions[session.remote_id].status == "closed"


def test_a_session_the_worker_lists_ready_with_its_job_finished_is_never_stuck(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    # Issue #15, case 2: our collection stalled (a killed process holds the session's
    # lease) while the worker finished the job; the session is not to blame.
    fleet = build_fleet(
        fake_worker, fake_writer, overrides={"lease_s": 5, "session_stuck_after_s": 5}
    )
    fake_worker.jobs_paused = True
    mission = actions.create_mission(name="Lenta", urls=["https://example.com/a"])
    fleet.drive(lambda: BrowserSession.objects.filter(job_status="running").exists())
    session = BrowserSession.objects.get(mission=mission, job_status="running")
    BrowserSession.objects.filter(pk=session.pk).update(
        locked_by="killed-process", locked_until=timezone.now() + timezone.timedelta(seconds=60)
    )
    fake_worker.advance_job(fake_worker.sessions[session.remote_id].job_id or "")
    assert fake_worker.session_json(session.remote_id)["status"] == "ready"

    later = timezone.now() + timezone.timedelta(seconds=120)  # far past stuck_after
    fleet.orchestrator.managers["sessions"].poll_workers(later, config.load())

    session.refresh_from_db()
    assert session.status == SessionStatus.BUSY
    assert session.error_code == ""


def test_a_busy_session_without_activity_is_still_stuck(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    fleet = build_fleet(
        fake_worker, fake_writer, overrides={"lease_s": 5, "session_stuck_after_s": 5}
    )
    fake_worker.jobs_paused = True
    mission = actions.create_mission(name="Parada", urls=["https://example.com/a"])
    fleet.drive(lambda: BrowserSession.objects.filter(job_status="running").exists())
    session = BrowserSession.objects.get(mission=mission, job_status="running")

    later = timezone.now() + timezone.timedelta(seconds=120)
    fleet.orchestrator.managers["sessions"].poll_workers(later, config.load())

    session.refresh_from_db()
    assert session.status == SessionStatus.STUCK


def test_sessions_failed_by_their_proxy_never_pause_the_site(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    # Issue #15, case 3: proxy_connect_failed is the proxy's fault, not the site's.
    fleet = build_fleet(fake_worker, fake_writer, overrides={"site_breaker_failed_sessions": 2})
    fake_worker.jobs_paused = True
    mission = actions.create_mission(name="Proxy ruim", urls=["https://example.com/a"])
    for _ in range(3):
        fleet.drive(lambda: BrowserSession.objects.filter(job_status="running").exists())
        session = BrowserSession.objects.get(mission=mission, job_status="running")
        fake_worker.fail_session(session.remote_id, "proxy_connect_failed")
        fleet.orchestrator.managers["sessions"].poll_workers(timezone.now(), config.load())
        session.refresh_from_db()
        assert session.status == SessionStatus.FAILED

    faults = set(
        MissionEvent.objects.filter(mission=mission, error_code="SESSION_FAILED").values_list(
            "data__fault", flat=True
        )
    )
    assert faults == {"proxy"}
    assert site_breaker.session_failed("example.com", timezone.now(), config.load()) is None
    assert not DomainBreaker.objects.filter(state="open").exists()


def test_sessions_the_site_fails_still_pause_it(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    fleet = build_fleet(fake_worker, fake_writer, overrides={"site_breaker_failed_sessions": 2})
    fake_worker.jobs_paused = True
    mission = actions.create_mission(name="Site ruim", urls=["https://example.com/a"])
    for _ in range(2):
        fleet.drive(lambda: BrowserSession.objects.filter(job_status="running").exists())
        session = BrowserSession.objects.get(mission=mission, job_status="running")
        fake_worker.fail_session(session.remote_id, "browser_crashed")
        fleet.orchestrator.managers["sessions"].poll_workers(timezone.now(), config.load())

    row = site_breaker.session_failed("example.com", timezone.now(), config.load())
    assert row is not None and row.state == "open"


def test_cancel_fences_out_the_lease_holders_of_its_sessions(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    # Issue #15, case 5: cancel bumps the sessions' lease tokens (a holder can write
    # nothing more) and drops their leases, so they are closed on the worker at once.
    fleet = build_fleet(fake_worker, fake_writer)
    fake_worker.jobs_paused = True
    mission = actions.create_mission(name="Cancelar", urls=["https://example.com/a"])
    fleet.drive(lambda: BrowserSession.objects.filter(job_status="running").exists())
    session = BrowserSession.objects.get(mission=mission, job_status="running")
    BrowserSession.objects.filter(pk=session.pk).update(
        locked_by="other-process", locked_until=timezone.now() + timezone.timedelta(seconds=60)
    )
    token = BrowserSession.objects.get(pk=session.pk).lease_token

    actions.cancel_mission(mission)
    fleet.orchestrator.managers["sessions"].close_sessions(timezone.now(), config.load())

    session.refresh_from_db()
    assert session.lease_token > token
    assert session.status == SessionStatus.CLOSED
    assert fake_worker.sessions[session.remote_id].status == "closed"
    jobs = len(fake_worker.jobs)
    fleet.step(2)
    assert len(fake_worker.jobs) == jobs  # no job handed out after the cancel


@pytest.mark.parametrize("lease_left_s", [-5, 60])
def test_a_killed_holders_sessions_are_collected_and_charged_to_no_one(
    fake_worker: FakeWorker, fake_writer: FakeWriter, lease_left_s: int
) -> None:
    # Issue #15, case 2: a killed orchestrator (heartbeat gone) held the lease of a
    # running session and of its mission; the worker finished the job meanwhile. The
    # lease is freed at once (or was expired), the result is collected, and nothing is
    # charged: no stuck session, no site pause, no rotation or retry of the mission.
    fleet = build_fleet(
        fake_worker, fake_writer, overrides={"lease_s": 5, "session_stuck_after_s": 5}
    )
    fake_worker.jobs_paused = True
    mission = actions.create_mission(name="Órfã", urls=["https://example.com/a"])
    fleet.drive(lambda: BrowserSession.objects.filter(job_status="running").exists())
    session = BrowserSession.objects.get(mission=mission, job_status="running")
    gone = timezone.now() - timezone.timedelta(seconds=120)
    OrchestratorInstanceFactory(name="killed:1", heartbeat_at=gone, started_at=gone)
    held = {
        "locked_by": "killed:1",
        "locked_until": timezone.now() + timezone.timedelta(seconds=lease_left_s),
    }
    BrowserSession.objects.filter(pk=session.pk).update(**held)
    Mission.objects.filter(pk=mission.pk).update(**held)
    fake_worker.advance_job(fake_worker.sessions[session.remote_id].job_id or "")
    later = timezone.now() + timezone.timedelta(seconds=120)  # far past stuck_after
    fleet.orchestrator.managers["sessions"].poll_workers(later, config.load())

    fake_worker.jobs_paused = False
    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO, max_rounds=30)

    session.refresh_from_db()
    assert session.error_code == "" and session.status != SessionStatus.STUCK
    assert (mission.attempt, mission.session_rotations) == (1, 0)
    assert fake_writer.stored_count(mission.pk) == 1
    assert not DomainBreaker.objects.filter(paused_until__isnull=False).exists()
    assert not MissionEvent.objects.filter(mission=mission, message__contains="travada").exists()


def test_only_the_leases_of_gone_instances_are_freed() -> None:
    now = timezone.now()
    OrchestratorInstanceFactory(name="alive:1", heartbeat_at=now, started_at=now)
    OrchestratorInstanceFactory(name="stopped:1", heartbeat_at=now, started_at=now, stopped_at=now)
    until = now + timezone.timedelta(seconds=60)
    alive = factories.BrowserSessionFactory(locked_by="alive:1", locked_until=until)
    stopped = factories.BrowserSessionFactory(locked_by="stopped:1", locked_until=until)
    unknown = factories.BrowserSessionFactory(locked_by="never-seen", locked_until=until)

    assert leases.reclaim_orphaned(now, 30) == 1

    rows = {s.pk: s for s in BrowserSession.objects.all()}
    assert (rows[alive.pk].locked_by, rows[alive.pk].lease_token) == ("alive:1", 0)
    assert (rows[stopped.pk].locked_by, rows[stopped.pk].lease_token) == ("", 1)
    assert rows[stopped.pk].locked_until is None
    assert rows[unknown.pk].locked_by == "never-seen"


def test_a_site_failed_by_its_proxies_errs_within_its_retry_budget(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    # Issue #15, case 3: every session fails as soon as its job starts
    # (proxy_connect_failed). The breaker's defaults (5 failed sessions pause the site
    # for 900 s) stay on: a proxy fault must not count, so the mission spends its 3
    # attempts x 2 sessions and ends, its only waits the retry backoffs (2 s, then 4 s).
    fleet = build_fleet(
        fake_worker,
        fake_writer,
        n_proxies=8,
        max_sessions=1,
        overrides={
            "max_session_rotations": 1,
            "max_retries": 2,
            "retry_backoff_base_s": 2.0,
            "retry_backoff_cap_s": 5.0,
            "retry_jitter": 0.0,
        },
    )
    fake_worker.fail_sessions_on_job = "proxy_connect_failed"
    mission = actions.create_mission(
        name="Proxy ruim", urls=[f"https://inalcancavel.example/p/{i}" for i in range(10)]
    )
    waited = 0.0  # the injected clock: each backoff is skipped and added here
    for _ in range(120):
        fleet.step()
        mission.refresh_from_db()
        if mission.status == MissionStatus.ERRO:
            break
        now = timezone.now()
        if mission.status == MissionStatus.QUEUED and mission.next_attempt_at:
            waited += max(0.0, (mission.next_attempt_at - now).total_seconds())
            Mission.objects.filter(pk=mission.pk).update(next_attempt_at=now)
    assert mission.status == MissionStatus.ERRO
    assert mission.error_code == "SESSION_ROTATIONS_EXHAUSTED"
    assert mission.attempt == 3
    assert waited <= 6.5
    opened = len(fake_worker.sessions)
    fleet.step(5)
    assert len(fake_worker.sessions) == opened <= 6
    assert not DomainBreaker.objects.filter(trips__gt=0).exists()
    faults = set(
        MissionEvent.objects.filter(
            mission=mission, kind="session", error_code__startswith="SESSION_"
        ).values_list("data__fault", flat=True)
    )
    assert faults == {"proxy"}


def test_a_job_refused_by_a_session_its_proxy_failed_is_blamed_on_the_proxy(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    # Issue #15, case 3: the session failed on the worker (proxy_connect_failed) before
    # our poll saw it; the next job is refused `session_not_ready`. The dispatcher asks
    # the worker why: the proxy's fault, not the site's.
    fleet = build_fleet(fake_worker, fake_writer, items_per_job=1, max_sessions=1)
    fake_worker.jobs_paused = True
    mission = actions.create_mission(
        name="Recusa", urls=["https://example.com/a", "https://example.com/b"]
    )
    fleet.drive(lambda: BrowserSession.objects.filter(job_status="running").exists())
    session = BrowserSession.objects.get(mission=mission, job_status="running")
    fake_worker.jobs_paused = False
    fake_worker.tick()
    manager = fleet.orchestrator.managers["workers"]
    # Collect the first job (the session is ready again), then the worker fails it.
    fleet.drive(
        lambda: BrowserSession.objects.filter(pk=session.pk, job_status="").exists(),
        what="the first job collected",
    )
    fake_worker.fail_session(session.remote_id, "proxy_connect_failed")

    manager.dispatch_jobs(timezone.now(), config.load())

    session.refresh_from_db()
    assert session.status == SessionStatus.FAILED
    event = MissionEvent.objects.get(mission=mission, error_code="SESSION_FAILED")
    assert event.data["fault"] == "proxy"
    assert "session_not_ready (proxy_connect_failed)" in event.message


def test_a_502_provider_error_outside_post_sessions_costs_no_attempt(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    # Issue #15 case 7: the contract defines `provider_error` for POST /sessions only;
    # on the job and results endpoints a 502 is the worker's transient fault.
    fleet = build_fleet(fake_worker, fake_writer, items_per_job=2, max_sessions=1)
    fake_worker.fail_matching("POST", r"^/sessions/[^/]+/jobs$", 2, 502, "provider_error")
    fake_worker.fail_matching("GET", r"^/jobs/[^/]+/results$", 2, 502, "provider_error")
    mission = actions.create_mission(
        name="Transitório", urls=["https://example.com/a", "https://example.com/b"]
    )
    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO, MissionStatus.ERRO)
    assert fake_worker.faults_served["502"] == 4
    assert mission.status == MissionStatus.FINALIZADO
    assert (mission.attempt, mission.session_rotations, mission.done_items) == (1, 0, 2)
    assert BrowserSession.objects.filter(mission=mission).count() == 1
    assert fake_writer.stored_count(mission.pk) == 2


@pytest.mark.django_db(transaction=True)
def test_a_session_the_worker_opens_after_its_mission_was_cancelled_is_closed(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    # Issue #15, case 5 (two processes): the cancel lands while POST /sessions is in
    # flight; the close step looks the session up by its key before the worker has it,
    # finds nothing and frees the row. The opener, fenced out when the answer comes,
    # closes what the worker opened.
    fleet = build_fleet(fake_worker, fake_writer)
    mission = actions.create_mission(name="Em voo", urls=["https://example.com/a"])
    fleet.orchestrator.run_tick("missions")
    fake_worker.hold_next("POST", r"^/sessions$")
    opener = threading.Thread(target=_tick_then_close, args=(fleet.orchestrator, "sessions"))
    opener.start()
    try:
        for _ in range(200):
            if fake_worker.holding:
                break
            time.sleep(0.05)
        assert fake_worker.holding == 1
        actions.cancel_mission(mission)
        closer = SessionManager("closer")
        assert closer.close_sessions(timezone.now(), config.load()) == 1
        session = BrowserSession.objects.get(mission=mission)
        assert (session.status, session.holds_slot) == (SessionStatus.CLOSED, False)
    finally:
        fake_worker.release_held()
        opener.join()
    assert len(fake_worker.sessions) == 1  # the worker did open it
    assert fake_worker.active_sessions() == []


def _tick_then_close(orchestrator: Orchestrator, kind: str) -> None:
    try:
        orchestrator.run_tick(kind)
    finally:
        connection.close()
