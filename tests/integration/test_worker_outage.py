"""Issue #15, case 1: a worker outage converges without wedging the fleet.

The fake worker goes down (connection refused) with every slot busy, the engine
steps through the outage, then the worker comes back still holding the sessions we
gave up on. They are closed on the worker (DELETE) as soon as it answers; opens are
backed off per worker; no mission pays a rotation or a retry.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from django.utils import timezone

from orchestrator import actions
from orchestrator.clients.worker import WorkerClient
from orchestrator.models import BrowserSession, Mission
from orchestrator.open_backoff import OpenBackoff, admit
from orchestrator.runner import MANAGER_CLASSES, Orchestrator
from orchestrator.states import MissionStatus, SessionStatus
from registry import config
from registry.config import Config
from registry.models import Proxy, Worker
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.integration.engine_helpers import Fleet, build_fleet

pytestmark = pytest.mark.django_db


class CountingTransport(httpx.HTTPTransport):
    """Counts the session opens the engine attempts, refused connections included."""

    def __init__(self) -> None:
        super().__init__()
        self.opens = 0
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/sessions"):
            with self.lock:
                self.opens += 1
        return super().handle_request(request)


def counting_fleet(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> tuple[Fleet, CountingTransport]:
    fleet = build_fleet(fake_worker, fake_writer, n_proxies=8, items_per_job=2, max_sessions=1)
    transport = CountingTransport()

    def client(worker: Worker, cfg: Config) -> WorkerClient:
        return WorkerClient.for_worker(worker, cfg, transport=transport)

    fleet.orchestrator = Orchestrator(
        name="outage-orchestrator",
        use_notify=False,
        manager_factory=lambda kind, owner: MANAGER_CLASSES[kind](owner, worker_client=client),
    )
    return fleet, transport


def drive_slowly(fleet: Fleet, until: Callable[[], bool], what: str, rounds: int = 400) -> None:
    """Whole passes with a short pause, so that the breaker's real-time probe comes."""

    def check() -> bool:
        time.sleep(0.05)
        return until()

    fleet.drive(check, max_rounds=rounds, what=what)


def test_a_worker_outage_closes_the_abandoned_sessions_and_every_mission_finishes(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    fleet, transport = counting_fleet(fake_worker, fake_writer)
    missions = [
        actions.create_mission(
            name=f"M{i}", urls=[f"https://example.com/{i}/{k}" for k in range(4)]
        )
        for i in range(20)
    ]
    fake_worker.jobs_paused = True
    drive_slowly(
        fleet,
        lambda: BrowserSession.objects.filter(job_status="running").count() == 8,
        "every slot busy",
    )
    held_before = {s.id for s in fake_worker.active_sessions()}
    assert len(held_before) == 8

    fake_worker.down()
    opens_before = transport.opens
    started = time.monotonic()
    drive_slowly(
        fleet,
        lambda: (
            time.monotonic() - started > 3
            and not BrowserSession.objects.filter(
                status__in=[SessionStatus.READY, SessionStatus.BUSY, SessionStatus.CREATING]
            ).exists()
        ),
        "sessions given up during the outage",
    )
    outage_opens = transport.opens - opens_before
    # Every session we gave up on still holds its slot: nothing opened into a full worker.
    assert (
        BrowserSession.objects.filter(status=SessionStatus.DISCONNECTED, holds_slot=True).count()
        == 8
    )
    assert outage_opens < 3 * fake_worker.max_sessions, outage_opens

    fake_worker.up()
    fake_worker.jobs_paused = False
    drive_slowly(
        fleet,
        lambda: (
            Mission.objects.filter(status=MissionStatus.FINALIZADO).count() == 20
            and not fake_worker.active_sessions()
        ),
        "every mission FINALIZADO and no session left on the worker",
        rounds=1500,
    )

    # The sessions abandoned during the outage were closed on the worker by DELETE.
    assert {fake_worker.sessions[sid].status for sid in held_before} == {"closed"}
    assert fake_worker.route_counts["DELETE /sessions/{id}"] >= 8
    for mission in missions:
        mission.refresh_from_db()
        assert (mission.attempt, mission.session_rotations, mission.done_items) == (1, 0, 4)
    assert not Proxy.objects.filter(status="cooldown").exists()
    worker = Worker.objects.get()
    assert worker.active_sessions == BrowserSession.objects.filter(holds_slot=True).count() == 0


def test_a_full_worker_keeps_the_session_requested_and_is_probed_with_backoff(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    fleet, transport = counting_fleet(fake_worker, fake_writer)
    fake_worker.max_sessions = 0  # full with sessions we do not know about
    mission = actions.create_mission(name="Cheio", urls=["https://example.com/a"])

    fleet.drive(lambda: fake_worker.route_counts["POST /sessions"] >= 1, what="a refused open")
    manager = fleet.orchestrator.managers["sessions"]
    refused = fake_worker.route_counts["POST /sessions"]

    # The clock is injected (past any wait, cap 30 s): one probe, refused...
    now = timezone.now() + dt.timedelta(seconds=60)
    for _ in range(10):
        manager.open_requested(now, config.load())
    assert fake_worker.route_counts["POST /sessions"] == refused + 1
    # ...then nothing until the next wait is over, and one probe again.
    later = now + dt.timedelta(seconds=60)
    for _ in range(10):
        manager.open_requested(later, config.load())
    assert fake_worker.route_counts["POST /sessions"] == refused + 2
    assert transport.opens == refused + 2
    session = BrowserSession.objects.get(mission=mission)
    assert session.status == SessionStatus.REQUESTED
    mission.refresh_from_db()
    assert mission.session_rotations == 0

    fake_worker.max_sessions = 8
    fleet.orchestrator.managers["sessions"].open_backoff.succeeded(fleet.worker.pk)
    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO)
    assert (mission.attempt, mission.session_rotations) == (1, 0)


def test_the_open_backoff_admits_one_probe_per_wait_and_doubles_it() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    backoff = OpenBackoff(base_s=1, cap_s=4)
    assert admit(backoff, [1, 1, 2], now) == ([0, 1, 2], [])
    assert backoff.failed(1, now) == now + dt.timedelta(seconds=1)
    assert admit(backoff, [1, 1, 2], now) == ([2], [0, 1])
    later = now + dt.timedelta(seconds=1)
    assert admit(backoff, [1, 1, 2], later) == ([0, 2], [1])
    assert backoff.failed(1, later) == later + dt.timedelta(seconds=2)
    assert backoff.failed(1, later) == later + dt.timedelta(seconds=4)
    assert backoff.failed(1, later) == later + dt.timedelta(seconds=4)  # capped
    backoff.succeeded(1)
    assert admit(backoff, [1, 1], later) == ([0, 1], [])


def test_allocation_opens_nothing_on_a_worker_whose_health_says_it_is_full(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    # Case 1: the capacity a worker reports on /health bounds allocation, so a worker
    # full of sessions we do not know about gets no open (and no 409) at all.
    fleet = build_fleet(fake_worker, fake_writer)
    fake_worker.max_sessions = 0
    health = fleet.orchestrator.managers["workers"]
    health.check_health(timezone.now(), config.load())  # type: ignore[attr-defined]
    assert Worker.objects.get().reported_max_sessions == 0
    mission = actions.create_mission(name="Cheio", urls=["https://example.com/a"])

    fleet.step(5)

    assert fake_worker.route_counts["POST /sessions"] == 0
    assert not BrowserSession.objects.filter(mission=mission).exists()
    fake_worker.max_sessions = 8
    health.check_health(timezone.now(), config.load())  # type: ignore[attr-defined]
    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO)
    assert (mission.attempt, mission.session_rotations) == (1, 0)


def test_the_slot_limit_counts_the_sessions_a_worker_reports_beyond_ours() -> None:
    from orchestrator.worker_capacity import slot_limits
    from tests import factories

    plain = factories.WorkerFactory(max_sessions=8)
    reported = factories.WorkerFactory(
        max_sessions=8, reported_max_sessions=4, reported_active_sessions=3
    )
    factories.BrowserSessionFactory(worker=reported, holds_slot=True)

    # 3 active, 1 of them ours: 2 foreign sessions take 2 of the 4 reported slots.
    assert slot_limits(Worker.objects.all()) == {plain.pk: 8, reported.pk: 2}
