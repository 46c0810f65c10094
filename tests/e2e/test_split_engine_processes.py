"""`run_orchestrator --processes 2` as real processes: the managers split over two
engine processes finish missions as one would; signals reach every child; a child
that dies takes the engine down so that its service manager restarts it whole."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from orchestrator.models import Mission, OrchestratorInstance
from tests.e2e.processes import spawn, stop, wait_for
from tests.e2e.test_orchestrator_processes import all_final, create_missions, setup_fleet
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("processes"),
]


def children(proc: subprocess.Popen[bytes]) -> list[int]:
    with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
        return [int(pid) for pid in f.read().split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is not running.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def running_instances() -> list[OrchestratorInstance]:
    return list(OrchestratorInstance.objects.filter(stopped_at__isnull=True))


def test_two_engine_processes_split_the_managers_and_finish_every_mission(
    fake_worker: FakeWorker, fake_writer: FakeWriter, tmp_path: Path
) -> None:
    setup_fleet(fake_worker, fake_writer, proxies=8)
    ids = create_missions(20, 5)
    log = tmp_path / "engine.log"
    engine = spawn("run_orchestrator", "--processes", "2", "--name", "split", log=log)
    try:
        wait_for(lambda: all_final(ids), 240, "20 missions FINALIZADO")
        instances = {i.name: i.managers for i in running_instances()}
        pids = children(engine)
    finally:
        code = stop(engine)
    assert code == 0, log.read_text()[-3000:]
    # Two instances, each with its own managers, all four run once between them.
    assert sorted(instances) == ["split-1", "split-2"]
    managers = [m for group in instances.values() for m in group]
    assert sorted(managers) == ["etl", "missions", "sessions", "workers"]
    # The signal reached both children: they stopped cleanly (marked in the database).
    assert len(pids) == 2 and not any(alive(pid) for pid in pids)
    assert not running_instances()
    assert sum(fake_writer.stored_count(m) for m in ids) == 100
    assert Mission.objects.filter(pk__in=ids, done_items=5).count() == 20


def test_a_dead_engine_process_takes_the_other_down_and_the_exit_code_says_so(
    fake_worker: FakeWorker, fake_writer: FakeWriter, tmp_path: Path
) -> None:
    setup_fleet(fake_worker, fake_writer, proxies=2)
    log = tmp_path / "engine.log"
    engine = spawn("run_orchestrator", "--processes", "2", log=log)
    try:
        wait_for(lambda: len(running_instances()) == 2, 60, "two engine processes running")
        first, second = children(engine)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: engine.poll() is not None, 60, "the engine exits")
    finally:
        code = stop(engine)
    # Not left running without a manager: the survivor was stopped, the engine exits
    # with the dead child's code (128 + SIGKILL) for its service manager to restart it.
    assert code == 128 + signal.SIGKILL, log.read_text()[-3000:]
    assert not alive(second)
    assert "stopping the others" in log.read_text()


def test_no_engine_process_outlives_a_killed_supervisor(
    fake_worker: FakeWorker, fake_writer: FakeWriter, tmp_path: Path
) -> None:
    setup_fleet(fake_worker, fake_writer, proxies=2)
    log = tmp_path / "engine.log"
    engine = spawn("run_orchestrator", "--processes", "2", log=log)
    pids: list[int] = []
    try:
        wait_for(lambda: len(running_instances()) == 2, 60, "two engine processes running")
        pids = children(engine)
        engine.send_signal(signal.SIGKILL)  # no handler runs: the kernel tells the children
        engine.wait()
        wait_for(lambda: not any(alive(pid) for pid in pids), 60, "the children exit")
    finally:
        stop(engine)
        for pid in pids:  # orphans of a failed run must not outlive the test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # They were told with SIGTERM: each stopped cleanly, its instance marked stopped.
    assert not running_instances(), log.read_text()[-3000:]
