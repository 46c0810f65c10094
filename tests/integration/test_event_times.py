"""Issue #15 case 8: checkpoints and events record when the thing happened, in order."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from orchestrator import actions
from orchestrator.managers.workers import WorkerManager
from orchestrator.models import BrowserSession, Mission, MissionEvent
from orchestrator.states import MissionStatus, SessionStatus
from orchestrator.transitions import Move, transition_many
from registry import config
from tests import factories
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.integration.engine_helpers import build_fleet

pytestmark = pytest.mark.django_db


def test_a_transition_is_never_recorded_before_the_mission_s_previous_checkpoint() -> None:
    assigned = timezone.now()
    mission = factories.MissionFactory(status=MissionStatus.ATRIBUIDO, atribuido_at=assigned)
    # The WorkerManager's tick began 11 ms before the SessionManager's (the run).
    early = assigned - dt.timedelta(milliseconds=11)
    assert transition_many([Move(mission, "Primeiro job iniciado")], "EXTRAINDO", now=early)
    mission.refresh_from_db()
    assert mission.extraindo_at == assigned >= mission.atribuido_at
    event = MissionEvent.objects.get(mission=mission, to_status=MissionStatus.EXTRAINDO)
    assert event.created_at == assigned


def test_a_transition_on_time_keeps_its_own_time() -> None:
    assigned = timezone.now()
    mission = factories.MissionFactory(status=MissionStatus.ATRIBUIDO, atribuido_at=assigned)
    later = assigned + dt.timedelta(seconds=3)
    transition_many([Move(mission)], MissionStatus.EXTRAINDO, now=later)
    mission.refresh_from_db()
    assert mission.extraindo_at == later


@pytest.mark.django_db(transaction=True)
def test_job_events_carry_the_time_the_worker_answered_not_the_tick_s_start(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    fleet = build_fleet(fake_worker, fake_writer, items_per_job=2, max_sessions=1)
    mission = actions.create_mission(
        name="Horas", urls=["https://example.com/a", "https://example.com/b"]
    )
    ready = BrowserSession.objects.filter(status=SessionStatus.READY, job_key="")
    for _ in range(20):
        fake_worker.tick()
        fleet.orchestrator.run_tick("missions")
        fleet.orchestrator.run_tick("sessions")
        if ready.exists():
            break
    assert ready.exists()
    # The tick's clock reads an hour ago (a tick that started long before its calls).
    tick_start = timezone.now() - dt.timedelta(hours=1)
    before_call = timezone.now()
    assert WorkerManager("times").dispatch_jobs(tick_start, config.load()) == 1
    after_call = timezone.now()
    mission = Mission.objects.get(pk=mission.pk)
    job = MissionEvent.objects.get(mission=mission, kind=MissionEvent.Kind.JOB)
    assert before_call <= job.created_at <= after_call
    assert mission.atribuido_at is not None and mission.extraindo_at is not None
    assert mission.atribuido_at <= mission.extraindo_at
    assert before_call <= mission.extraindo_at <= after_call
    # Events in the order things happened.
    times = list(
        MissionEvent.objects.filter(mission=mission)
        .order_by("id")
        .values_list("created_at", flat=True)
    )
    assert times == sorted(times)
