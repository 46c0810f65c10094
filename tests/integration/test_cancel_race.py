"""Issue #15 case 5: cancel and retry missions while two orchestrators run them, on
PostgreSQL (the lock order matters there): no deadlock, every cancelled mission's
sessions closed on the worker, no job started after the cancel."""

from __future__ import annotations

import datetime as dt
import os
import threading

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from orchestrator import actions, pgbatch, transitions
from orchestrator.actions import ActionError
from orchestrator.models import BrowserSession, Mission, MissionEvent
from orchestrator.runner import Orchestrator
from orchestrator.states import CANCELLABLE, RETRYABLE_BY_OPERATOR, MissionStatus
from tests import factories
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.integration.engine_helpers import build_fleet

ROUNDS = int(os.environ.get("MC_CANCEL_RACE_ROUNDS", "40"))


@pytest.mark.django_db(transaction=True)
def test_cancel_and_retry_race_two_orchestrators_without_deadlock(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    if not pgbatch.on_postgresql():
        pytest.skip("the lock-order race needs PostgreSQL")
    fleet = build_fleet(fake_worker, fake_writer, items_per_job=1, max_sessions=2)
    fake_worker.jobs_paused = True  # jobs keep running: cancels meet live sessions
    missions = [
        actions.create_mission(
            name=f"Corrida {i}", urls=[f"https://example.com/{i}/{n}" for n in range(3)]
        )
        for i in range(4)
    ]
    stop = threading.Event()
    errors: list[str] = []
    did = {"cancel": 0, "retry": 0}

    def run(name: str) -> None:
        orch = Orchestrator(name=name, use_notify=False)
        try:
            while not stop.is_set():
                orch.run_once()
                errors.extend(
                    str(s.get("error"))
                    for s in orch.stats.values()
                    if "deadlock" in str(s.get("error"))
                )
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(f"race-{n}",)) for n in (1, 2)]
    for t in threads:
        t.start()
    try:
        for n in range(ROUNDS):
            fake_worker.tick()
            mission = Mission.objects.get(pk=missions[n % len(missions)].pk)
            try:
                if mission.status in CANCELLABLE:
                    actions.cancel_mission(mission, actor="teste")
                    did["cancel"] += 1
                elif mission.status in RETRYABLE_BY_OPERATOR:
                    actions.retry_mission(mission, actor="teste")
                    did["retry"] += 1
            except ActionError:
                pass  # the mission moved meanwhile: fine
            except OperationalError as exc:
                errors.append(str(exc))
    finally:
        stop.set()
        for t in threads:
            t.join()

    for mission in Mission.objects.filter(pk__in=[m.pk for m in missions]):
        if mission.status in CANCELLABLE:
            actions.cancel_mission(mission, actor="teste")
    fleet.drive(
        lambda: not BrowserSession.objects.filter(mission__in=missions, holds_slot=True).exists(),
        max_rounds=40,
        what="every cancelled session closed",
    )
    assert errors == []
    assert did["cancel"] >= 2 and did["retry"] >= 2, did
    assert BrowserSession.objects.filter(mission__in=missions, opened_at__isnull=False).exists()
    print(f"cancel race: {ROUNDS} rounds, {did}, {BrowserSession.objects.count()} sessions")
    keys = set(
        BrowserSession.objects.filter(mission__in=missions).values_list("session_key", flat=True)
    )
    assert not [s for s in fake_worker.sessions.values() if s.active and s.session_key in keys]
    for mission in Mission.objects.filter(pk__in=[m.pk for m in missions]):
        assert mission.status == MissionStatus.CANCELADO
        cancelled_at = (
            MissionEvent.objects.filter(mission=mission, message="Cancelada pelo operador")
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        assert cancelled_at is not None
        late = MissionEvent.objects.filter(
            mission=mission, kind=MissionEvent.Kind.JOB, created_at__gt=cancelled_at
        ).filter(message__contains="iniciado")
        assert not late.exists()


@pytest.mark.django_db
def test_a_cancel_is_stamped_when_it_holds_the_locks_not_when_it_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cancel that waited for a session's lock while the engine recorded a job start
    # there must be stamped after that job (the e2e cancel race saw a job event stamped
    # after a cancel that had waited behind it).
    mission = factories.MissionFactory(status=MissionStatus.EXTRAINDO)
    real_lock = transitions.lock_live_sessions
    held: list[dt.datetime] = []

    def lock_then_note(ids: list[int]) -> None:
        real_lock(ids)
        held.append(timezone.now())

    monkeypatch.setattr(transitions, "lock_live_sessions", lock_then_note)
    actions.cancel_mission(mission)
    cancelled_at = MissionEvent.objects.get(
        mission=mission, to_status=MissionStatus.CANCELADO
    ).created_at
    assert held and cancelled_at >= held[0]
