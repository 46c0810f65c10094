"""run_orchestrator as real processes on PostgreSQL: concurrency, crashes, shutdown."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from django.db.models import Count, F

from orchestrator import actions
from orchestrator.models import BrowserSession, Mission, MissionEvent, OrchestratorInstance
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
    "session_tick_s": 0.3,
    "worker_tick_s": 0.3,
    "mission_tick_s": 0.3,
    "retry_backoff_base_s": 0.0,
    "retry_jitter": 0.0,
    "lease_s": 5,
    "proxy_cooldown_s": 0,
    "http_max_attempts": 2,
}


def setup_fleet(fake_worker: FakeWorker, fake_writer: FakeWriter, *, proxies: int) -> None:
    register_fleet(
        fake_worker,
        fake_writer,
        settings=FAST,
        proxies=proxies,
        items_per_job=5,
        max_sessions=2,
        worker_sessions=32,
    )


def create_missions(n: int, per: int) -> list[int]:
    return [
        actions.create_mission(
            name=f"M{m}", urls=[f"https://site{m % 7}.example/p/{m}/{i}" for i in range(per)]
        ).pk
        for m in range(n)
    ]


def all_final(ids: list[int]) -> bool:
    return not Mission.objects.filter(pk__in=ids).exclude(status=MissionStatus.FINALIZADO).exists()


def assert_nothing_double_allocated() -> None:
    for worker in Worker.objects.all():
        held = BrowserSession.objects.filter(worker=worker, holds_slot=True).count()
        assert worker.active_sessions == held
        assert held <= worker.max_sessions
    assert not Proxy.objects.filter(active_sessions__gt=F("max_sessions")).exists()
    for proxy in Proxy.objects.all():
        assert (
            proxy.active_sessions
            == BrowserSession.objects.filter(proxy=proxy, holds_slot=True).count()
        )


@pytest.fixture
def big_worker(make_fake_worker):  # type: ignore[no-untyped-def]
    return make_fake_worker(max_sessions=32)


def test_two_orchestrators_finish_200_missions_with_nothing_done_twice(
    big_worker: FakeWorker, fake_writer: FakeWriter, tmp_path: Path
) -> None:
    setup_fleet(big_worker, fake_writer, proxies=40)
    ids = create_missions(200, 5)
    procs = [
        spawn("run_orchestrator", "--name", f"orch-{n}", log=tmp_path / f"orch-{n}.log")
        for n in range(2)
    ]
    try:
        wait_for(lambda: all_final(ids), 480, "200 missions FINALIZADO")
    finally:
        codes = [stop(p) for p in procs]
    assert codes == [0, 0], (tmp_path / "orch-0.log").read_text()[-3000:]
    assert sum(fake_writer.stored_count(m) for m in ids) == 1000
    # Nothing scraped twice: one remote job per job key, each item in exactly one job.
    # (A repeated idempotent request after a timeout under load is allowed: it creates
    # nothing new, and the writer dedupes a re-delivered page.)
    assert len(big_worker.jobs) == len(set(big_worker.job_keys_seen))
    assert sum(len(job.items) for job in big_worker.jobs.values()) == sum(
        Mission.objects.get(pk=m).total_items for m in ids
    )
    # Each mission was allocated and finalized exactly once.
    per_mission = (
        MissionEvent.objects.filter(mission_id__in=ids, kind="transition")
        .values("mission_id", "to_status")
        .annotate(n=Count("id"))
    )
    assert all(row["n"] == 1 for row in per_mission)
    instances = OrchestratorInstance.objects.filter(name__in=["orch-0", "orch-1"])
    assert instances.count() == 2
    assert all(i.stopped_at is not None for i in instances)
    assert_nothing_double_allocated()


def test_a_killed_orchestrator_loses_nothing_after_restart(
    big_worker: FakeWorker, fake_writer: FakeWriter, tmp_path: Path
) -> None:
    setup_fleet(big_worker, fake_writer, proxies=20)
    big_worker.item_latency = 0.05
    ids = create_missions(30, 10)
    first = spawn("run_orchestrator", "--name", "doomed", log=tmp_path / "doomed.log")
    try:
        wait_for(
            lambda: (
                Mission.objects.filter(pk__in=ids, done_items__gt=0).count() >= 5
                and not all_final(ids)
            ),
            90,
            "missions in flight",
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    second = spawn("run_orchestrator", "--name", "survivor", log=tmp_path / "survivor.log")
    try:
        wait_for(lambda: all_final(ids), 180, "every mission FINALIZADO after the restart")
        # The survivor closes every session, the dead one's included (once its leases
        # expire); a stop before that would leave them to the next orchestrator.
        wait_for(
            lambda: not BrowserSession.objects.filter(holds_slot=True).exists(),
            30,
            "slots released",
        )
    finally:
        assert stop(second) == 0
    for mission_id in ids:
        assert fake_writer.stored_count(mission_id) == 10
    assert Mission.objects.filter(pk__in=ids, done_items=10).count() == 30
    assert_nothing_double_allocated()


def test_eight_processes_racing_for_the_same_rows_never_double_allocate(
    big_worker: FakeWorker, fake_writer: FakeWriter, tmp_path: Path
) -> None:
    setup_fleet(big_worker, fake_writer, proxies=30)
    Worker.objects.update(max_sessions=24)
    ids = create_missions(60, 10)
    for _ in range(2):
        procs = [
            spawn(
                "run_orchestrator",
                "--once",
                "--managers",
                "missions",
                "--name",
                f"racer-{n}",
                log=tmp_path / f"racer-{n}.log",
            )
            for n in range(8)
        ]
        assert [p.wait(120) for p in procs] == [0] * 8
    # 24 worker slots, 30 proxies of one session each: at most 24 sessions exist.
    assert BrowserSession.objects.count() <= 24
    assert_nothing_double_allocated()
    proxies_in_use = (
        BrowserSession.objects.filter(holds_slot=True).values("proxy").annotate(n=Count("id"))
    )
    assert all(row["n"] == 1 for row in proxies_in_use)
    allocated = (
        MissionEvent.objects.filter(mission_id__in=ids, kind="transition", to_status="ATRIBUIDO")
        .values("mission_id")
        .annotate(n=Count("id"))
    )
    assert allocated and all(row["n"] == 1 for row in allocated)
    assert Mission.objects.filter(pk__in=ids, status=MissionStatus.ATRIBUIDO).count() == len(
        allocated
    )


def test_sigterm_drains_the_current_tick_and_exits_cleanly(
    big_worker: FakeWorker, fake_writer: FakeWriter, tmp_path: Path
) -> None:
    setup_fleet(big_worker, fake_writer, proxies=10)
    big_worker.item_latency = 0.02
    ids = create_missions(20, 10)
    proc = spawn("run_orchestrator", "--name", "drainer", log=tmp_path / "drainer.log")
    wait_for(
        lambda: Mission.objects.filter(pk__in=ids, done_items__gt=0).exists(),
        60,
        "work in flight",
    )

    assert stop(proc, timeout=15) == 0

    instance = OrchestratorInstance.objects.get(name="drainer")
    assert instance.stopped_at is not None
    assert not Mission.objects.filter(locked_by="drainer").exists()
    assert not BrowserSession.objects.filter(locked_by="drainer").exists()
    log = (tmp_path / "drainer.log").read_text()
    assert "finishing the current tick" in log and "stopped" in log
