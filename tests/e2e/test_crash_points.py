"""Kill the orchestrator hard at each named crash point, restart it, and prove the
missions finish with no extra session, job or record (PostgreSQL, real processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import actions
from orchestrator.crashpoints import EXIT_CODE, POINTS
from orchestrator.models import BrowserSession, Mission
from orchestrator.states import MissionStatus
from registry.models import Proxy, Worker
from tests.e2e.processes import spawn, stop, wait_for
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.fleet import register_fleet

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("processes"),
]

FAST = {
    "session_tick_s": 0.2,
    "worker_tick_s": 0.2,
    "mission_tick_s": 0.2,
    "lease_s": 5,
    "proxy_cooldown_s": 0,
    "retry_backoff_base_s": 0.0,
    "http_max_attempts": 1,
}


@pytest.mark.parametrize("point", sorted(POINTS))
def test_a_crash_at_each_point_loses_nothing_and_duplicates_nothing(
    point: str, fake_worker: FakeWorker, fake_writer: FakeWriter, tmp_path: Path
) -> None:
    register_fleet(
        fake_worker, fake_writer, settings=FAST, proxies=4, items_per_job=5, max_sessions=2
    )
    ids = [
        actions.create_mission(
            name=f"M{m}", urls=[f"https://shop{m}.example/p/{i}" for i in range(10)]
        ).pk
        for m in range(2)
    ]

    doomed = spawn(
        "run_orchestrator", "--name", "doomed", log=tmp_path / "doomed.log", MC_CRASH_AT=point
    )
    try:
        wait_for(lambda: doomed.poll() is not None, 60, f"a crash at {point}")
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait()
    assert doomed.returncode == EXIT_CODE, (tmp_path / "doomed.log").read_text()[-2000:]

    survivor = spawn("run_orchestrator", "--name", "survivor", log=tmp_path / "survivor.log")
    try:
        wait_for(
            lambda: (
                Mission.objects.filter(pk__in=ids, status=MissionStatus.FINALIZADO).count() == 2
                and not BrowserSession.objects.filter(holds_slot=True).exists()
            ),
            90,
            "missions finished and sessions closed after the restart",
        )
    finally:
        assert stop(survivor) == 0

    # Every record stored once, and nothing scraped twice.
    assert [fake_writer.stored_count(m) for m in ids] == [10, 10]
    assert len(fake_writer.records) == 20
    assert sum(len(job.items) for job in fake_worker.jobs.values()) == 20
    # One remote session per recorded session, one remote job per job key.
    assert len(fake_worker.sessions) == BrowserSession.objects.count()
    assert len(fake_worker.jobs) == len(set(fake_worker.job_keys_seen))
    assert not fake_worker.active_sessions()
    assert Worker.objects.get().active_sessions == 0
    assert set(Proxy.objects.values_list("active_sessions", flat=True)) == {0}
    assert all(m.done_items == 10 and m.attempt == 1 for m in Mission.objects.all())
