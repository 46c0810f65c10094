"""Faults of the services, one by one: the mission still finishes on its first attempt
(an outage is never the mission's fault), nothing raises out of a tick, and a breaker
keeps calls to a dead service bounded."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.utils import timezone

from orchestrator import actions
from orchestrator.models import Mission
from orchestrator.states import MissionStatus
from registry.models import Worker, Writer
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.integration.engine_helpers import Fleet, build_fleet

pytestmark = pytest.mark.django_db


def wait_for_probes(fleet: Fleet) -> None:
    """While a breaker is open nothing is called: end its open period now (through the
    row, not a wall-clock wait) so the next tick may probe."""
    now = timezone.now()
    for model in (Worker, Writer):
        model.objects.filter(circuit_open_until__gt=now).update(circuit_open_until=now)


def finish(fleet: Fleet, mission: Mission, rounds: int = 60) -> Mission:
    def done() -> bool:
        if Mission.objects.get(pk=mission.pk).status in (
            MissionStatus.FINALIZADO,
            MissionStatus.ERRO,
        ):
            return True
        wait_for_probes(fleet)
        return False

    fleet.drive(done, max_rounds=rounds, what=f"mission {mission.pk} ended")
    mission.refresh_from_db()
    return mission


FAULTS: dict[str, Callable[[FakeWorker, FakeWriter], None]] = {
    "worker 5xx burst": lambda w, wr: w.fail_next_requests(5, 503),
    "worker 429 burst": lambda w, wr: w.fail_next_requests(4, 429),
    "worker 500 burst": lambda w, wr: w.fail_next_requests(4, 500),
    "worker answers HTML": lambda w, wr: w.garbage_next(4),
    "worker times out": lambda w, wr: w.hang_next(2, 2.5),
    "worker refuses our key": lambda w, wr: setattr(w, "api_key", "another-key"),
    "writer 5xx burst": lambda w, wr: wr.fail_next_requests(5, 503),
    "writer answers HTML": lambda w, wr: wr.garbage_next(3),
    "writer fails after storing": lambda w, wr: wr.fail_after_store_next(2),
    "writer times out": lambda w, wr: wr.hang_next(1, 2.5),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_service_fault_never_burns_the_missions_retries(
    fault: str, fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    fleet = build_fleet(fake_worker, fake_writer)
    key = fake_worker.api_key
    mission = actions.create_mission(
        name=fault, urls=[f"https://example.com/{i}" for i in range(10)]
    )
    fleet.step()
    FAULTS[fault](fake_worker, fake_writer)
    fleet.step(4)
    fake_worker.api_key = key  # the key fault heals once an operator fixes it

    mission = finish(fleet, mission)

    assert (mission.status, mission.attempt) == (MissionStatus.FINALIZADO, 1)
    assert fake_writer.stored_count(mission.pk) == 10
    errors = [s.get("error") for s in fleet.orchestrator.stats.values() if s.get("error")]
    assert not errors, errors


def test_calls_to_a_dead_writer_stay_bounded_and_the_mission_waits(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    fleet = build_fleet(fake_worker, fake_writer)
    mission = actions.create_mission(
        name="outage", urls=[f"https://example.com/{i}" for i in range(10)]
    )
    fake_writer.unavailable = True
    fleet.drive(lambda: Writer.objects.get().circuit_open_until is not None, what="breaker open")
    # Three failures open the breaker (each call may bring its /health).
    assert len(fake_writer.calls) <= 6, fake_writer.calls
    # Open periods are ended through the row, not the wall clock: on a loaded machine a
    # few ticks outlast the configured 1 s and one more probe would be right, not a leak.
    for period in range(3):
        calls = len(fake_writer.calls)
        Writer.objects.update(circuit_open_until=timezone.now() + dt.timedelta(minutes=10))
        fleet.step(7)  # open: however many ticks run, nothing is called
        assert len(fake_writer.calls) == calls, (
            period,
            [(c.method, c.path) for c in fake_writer.calls[calls:]],
        )
        Writer.objects.update(circuit_open_until=timezone.now())
        # Half-open: one tick's round of calls (its /health, and one batch per session
        # with results: they go out together), whose failures open it again.
        fleet.step()
        assert 1 <= len(fake_writer.calls) - calls <= 1 + fleet.site.max_sessions, (
            period,
            [(c.method, c.path) for c in fake_writer.calls[calls:]],
        )
        assert Writer.objects.get().circuit_open_until is not None

    mission.refresh_from_db()
    assert mission.status == MissionStatus.EXTRAINDO
    assert mission.wait_reason.startswith("WRITER_UNAVAILABLE")

    fake_writer.unavailable = False
    mission = finish(fleet, mission)
    assert (mission.status, mission.attempt) == (MissionStatus.FINALIZADO, 1)
    assert fake_writer.stored_count(mission.pk) == 10
