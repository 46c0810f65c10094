"""`SessionManager`, the `WorkerManager` parts (`worker_health`, `dispatch`, `results`)
and `EtlManager` one step at a time: each method called once, one outcome checked (as
healthchecks tests `sendalerts`), against the database and the loopback fakes.

A mission is brought to the state a step needs by the steps before it (each called
once), never by a whole orchestrator pass."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

import pytest
from django.db import transaction
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from orchestrator import actions, events, transitions
from orchestrator.managers.etl import EtlManager
from orchestrator.managers.missions import MissionManager
from orchestrator.managers.session_poll import POLL_MARK_EVERY
from orchestrator.managers.sessions import SessionManager
from orchestrator.managers.workers import WorkerManager
from orchestrator.models import BrowserSession, Mission, MissionItem
from orchestrator.states import ItemStatus, MissionStatus, SessionStatus
from registry import config
from registry.models import HealthStatus, Worker
from tests.fakes.etl import FakeEtl
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.integration.engine_helpers import Fleet, build_fleet

pytestmark = pytest.mark.django_db

URLS = [f"https://example.com/p/{i}" for i in range(3)]


@pytest.fixture(autouse=True)
def _no_leftover_wakeups() -> Iterator[None]:
    yield
    events._pending.wake.clear()


@pytest.fixture
def fleet(fake_worker: FakeWorker, fake_writer: FakeWriter) -> Fleet:
    return build_fleet(fake_worker, fake_writer, items_per_job=5, max_sessions=1)


def _rng() -> random.Random:
    return random.Random(7)


def sessions() -> SessionManager:
    return SessionManager("step", rng=_rng())


def workers() -> WorkerManager:
    return WorkerManager("step", rng=_rng())


def requested(fleet: Fleet) -> Mission:
    """A mission claimed by the MissionManager: its session REQUESTED."""
    mission = actions.create_mission(name="Passo", urls=URLS)
    MissionManager("step", rng=_rng()).tick()
    assert BrowserSession.objects.filter(mission=mission).exists()
    return mission


def opened(fleet: Fleet) -> tuple[Mission, BrowserSession]:
    mission = requested(fleet)
    now, cfg = timezone.now(), config.load()
    assert sessions().open_requested(now, cfg) == 1
    fleet.fake_worker.tick()
    return mission, BrowserSession.objects.get(mission=mission)


def ready(fleet: Fleet) -> tuple[Mission, BrowserSession]:
    mission, session = opened(fleet)
    if session.status != SessionStatus.READY:
        sessions().poll_workers(timezone.now(), config.load())
        session.refresh_from_db()
    assert session.status == SessionStatus.READY
    return mission, session


def dispatched(fleet: Fleet) -> tuple[Mission, BrowserSession]:
    mission, session = ready(fleet)
    assert workers().dispatch_jobs(timezone.now(), config.load()) == 1
    return mission, session


# ------------------------------------------------------------------ SessionManager


def test_open_requested_opens_the_requested_session_on_the_worker(fleet: Fleet) -> None:
    mission = requested(fleet)

    assert sessions().open_requested(timezone.now(), config.load()) == 1

    session = BrowserSession.objects.get(mission=mission)
    assert session.remote_id and session.status in (SessionStatus.CREATING, SessionStatus.READY)
    assert [s.session_key for s in fleet.fake_worker.active_sessions()] == [
        fleet.fake_worker.sessions[session.remote_id].session_key
    ]


def test_open_requested_with_nothing_requested_does_nothing(fleet: Fleet) -> None:
    assert sessions().open_requested(timezone.now(), config.load()) == 0
    assert fleet.fake_worker.session_keys_seen == []


def test_poll_workers_ends_a_session_the_worker_forgot(fleet: Fleet) -> None:
    _, session = ready(fleet)
    fleet.fake_worker.drop_session(session.remote_id)
    BrowserSession.objects.filter(pk=session.pk).update(opened_at=timezone.now().replace(year=2020))

    sessions().poll_workers(timezone.now(), config.load())

    session.refresh_from_db()
    assert session.status == SessionStatus.DISCONNECTED


def test_poll_workers_marks_a_failed_remote_session_failed(fleet: Fleet) -> None:
    _, session = ready(fleet)
    fleet.fake_worker.fail_session(session.remote_id)

    sessions().poll_workers(timezone.now(), config.load())

    session.refresh_from_db()
    assert session.status == SessionStatus.FAILED


def test_poll_workers_writes_a_quiet_session_only_when_its_mark_is_old(fleet: Fleet) -> None:
    """Nothing new (same phase, same activity): the poll leaves the row alone until its
    last_polled_at is POLL_MARK_EVERY old; another phase is written at once."""
    _, session = ready(fleet)
    t0 = timezone.now()
    sessions().poll_workers(t0, config.load())
    marked = BrowserSession.objects.get(pk=session.pk).last_polled_at
    assert marked is not None

    sessions().poll_workers(t0 + dt.timedelta(seconds=5), config.load())
    assert BrowserSession.objects.get(pk=session.pk).last_polled_at == marked

    later = marked + POLL_MARK_EVERY
    sessions().poll_workers(later, config.load())
    assert BrowserSession.objects.get(pk=session.pk).last_polled_at == later

    fleet.fake_worker.sessions[session.remote_id].phase = "navigating"
    sessions().poll_workers(later + dt.timedelta(seconds=1), config.load())
    row = BrowserSession.objects.get(pk=session.pk)
    assert (row.phase, row.last_polled_at) == ("navigating", later + dt.timedelta(seconds=1))


def test_close_sessions_closes_a_closing_session_on_the_worker(fleet: Fleet) -> None:
    mission, session = ready(fleet)
    with transaction.atomic():
        transitions.close_mission_sessions(mission.pk, timezone.now())

    assert sessions().close_sessions(timezone.now(), config.load()) == 1

    session.refresh_from_db()
    assert session.status == SessionStatus.CLOSED
    assert fleet.fake_worker.active_sessions() == []


# ------------------------------------------------------------------ WorkerManager: health


def test_check_health_marks_an_answering_worker_ok(fleet: Fleet) -> None:
    Worker.objects.update(health_status=HealthStatus.UNKNOWN)

    assert workers().check_health(timezone.now(), config.load()) >= 1

    assert Worker.objects.get().health_status == HealthStatus.OK


def test_check_health_marks_a_worker_reporting_degraded_degraded(fleet: Fleet) -> None:
    Worker.objects.update(health_status=HealthStatus.UNKNOWN)
    fleet.fake_worker.health_status = "degraded"

    workers().check_health(timezone.now(), config.load())

    assert Worker.objects.get().health_status == HealthStatus.DEGRADED


def test_check_health_counts_an_unreachable_worker_against_its_breaker(fleet: Fleet) -> None:
    Worker.objects.update(base_url="http://127.0.0.1:9")  # nothing listens there

    assert workers().check_health(timezone.now(), config.load()) == 1  # the writer only

    assert Worker.objects.get().consecutive_failures == 1


# ------------------------------------------------------------------ WorkerManager: dispatch


def test_dispatch_jobs_hands_a_ready_session_its_items(fleet: Fleet) -> None:
    mission, _ = ready(fleet)

    assert workers().dispatch_jobs(timezone.now(), config.load()) == 1

    (job,) = fleet.fake_worker.jobs.values()
    assert sorted(i["url"] for i in job.items) == URLS
    assert set(MissionItem.objects.filter(mission=mission).values_list("status", flat=True)) == {
        ItemStatus.ASSIGNED
    }


def test_dispatch_jobs_without_a_ready_session_starts_nothing(fleet: Fleet) -> None:
    requested(fleet)
    assert workers().dispatch_jobs(timezone.now(), config.load()) == 0
    assert fleet.fake_worker.jobs == {}


# ------------------------------------------------------------------ WorkerManager: results


def test_collect_results_saves_finished_items_and_sends_them_to_the_writer(
    fleet: Fleet,
) -> None:
    mission, _ = dispatched(fleet)
    (job,) = fleet.fake_worker.jobs.values()
    fleet.fake_worker.advance_job(job.id)

    workers().collect_results(timezone.now(), config.load())

    mission.refresh_from_db()
    assert mission.done_items == len(URLS)
    assert fleet.fake_writer.stored_count(mission.pk) == len(URLS)


def test_collect_results_of_an_unfinished_job_saves_nothing(fleet: Fleet) -> None:
    mission, _ = dispatched(fleet)
    fleet.fake_worker.jobs_paused = True

    workers().collect_results(timezone.now(), config.load())

    mission.refresh_from_db()
    assert mission.done_items == 0
    assert fleet.fake_writer.stored_count(mission.pk) == 0


# ------------------------------------------------------------------ EtlManager


def test_etl_tick_without_an_etl_does_nothing(fleet: Fleet) -> None:
    actions.create_mission(name="Sem ETL", urls=URLS)
    assert not EtlManager("step", rng=_rng()).tick().did_work


def test_etl_tick_creates_the_missions_run(
    fleet: Fleet, fake_etl: FakeEtl, settings: SettingsWrapper
) -> None:
    settings.ETL_API_ENDPOINT = fake_etl.base_url
    settings.ETL_API_KEY = fake_etl.api_key
    actions.create_mission(name="Com ETL", urls=URLS)

    assert EtlManager("step", rng=_rng()).tick().did_work

    (run,) = fake_etl.runs.values()
    assert [i["url"] for i in run.items] == URLS


def test_steps_leave_the_mission_running(fleet: Fleet) -> None:
    mission, _ = dispatched(fleet)
    mission.refresh_from_db()
    assert mission.status in (MissionStatus.ATRIBUIDO, MissionStatus.EXTRAINDO)
