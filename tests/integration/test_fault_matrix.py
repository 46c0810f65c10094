"""Faults of the services, one by one: the mission still finishes on its first attempt
(an outage is never the mission's fault), nothing raises out of a tick, and a breaker
keeps calls to a dead service bounded."""

from __future__ import annotations

import math
import time
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
    """While a breaker is open nothing is called: wait (real time) for its probe."""
    deadline = time.monotonic() + 5
    now = timezone.now
    while any(
        s.circuit_open_until and s.circuit_open_until > now()
        for s in [*Worker.objects.all(), *Writer.objects.all()]
    ):
        assert time.monotonic() < deadline, "breaker never half-opened"
        time.sleep(0.05)


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
    rounds = 0
    started = time.monotonic()
    # At least ~2 breaker periods of 1 s and at least 21 ticks (a loaded machine is
    # slower per tick: the window then stretches, and the bound with it).
    while time.monotonic() - started < 2.5 or rounds <= 20:
        fleet.step()
        rounds += 1
    elapsed = time.monotonic() - started
    writer_calls = len(fake_writer.calls)

    mission.refresh_from_db()
    # Three failures open the breaker; then one probe (plus its /health) per 1 s open
    # period, and nothing in between, however many ticks run.
    periods = math.ceil(elapsed / 1.0)
    assert writer_calls <= 6 + 2 * periods, (writer_calls, rounds, elapsed)
    assert mission.status == MissionStatus.EXTRAINDO
    assert mission.wait_reason.startswith("WRITER_UNAVAILABLE")

    fake_writer.unavailable = False
    mission = finish(fleet, mission)
    assert (mission.status, mission.attempt) == (MissionStatus.FINALIZADO, 1)
    assert fake_writer.stored_count(mission.pk) == 10
