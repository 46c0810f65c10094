"""The orchestrator runs each manager on its own thread: ticks at the manager's interval,
at once when woken or after a tick that did work, and stops after the current tick."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
from django.db import OperationalError, connection

from orchestrator import runner
from orchestrator.managers import base
from orchestrator.managers.base import BaseManager, TickResult
from orchestrator.managers.session_poll import CREATING_POLL_S
from orchestrator.managers.sessions import SessionManager
from orchestrator.models import OrchestratorInstance
from orchestrator.runner import Orchestrator
from registry import config
from tests import factories
from tests.patience import Deadline

KINDS = ("sessions", "workers", "missions", "etl")
Script = Callable[[int], TickResult]


class Recorder:
    """The ticks of every fake manager, by kind and thread, for tests to wait on."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.ticks: list[tuple[str, str]] = []

    def record(self, kind: str) -> int:
        with self.changed:
            self.ticks.append((kind, threading.current_thread().name))
            self.changed.notify_all()
            return self.count(kind)

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.ticks if k == kind)

    def threads(self, kind: str) -> set[str]:
        return {name for k, name in self.ticks if k == kind}

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 10) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), f"{what}: {self.ticks}"


class FakeManager(BaseManager):
    def __init__(self, owner: str, kind: str, recorder: Recorder, script: Script) -> None:
        super().__init__(owner)
        self.name = kind
        self.recorder = recorder
        self.script = script

    def tick(self) -> TickResult:
        return self.script(self.recorder.record(self.name))


def idle(n: int) -> TickResult:
    return TickResult()


def orchestrator(recorder: Recorder, **scripts: Script) -> Orchestrator:
    def factory(kind: str, owner: str) -> BaseManager:
        return FakeManager(owner, kind, recorder, scripts.get(kind, idle))

    return Orchestrator(name="test-orchestrator", use_notify=False, manager_factory=factory)


def start(orch: Orchestrator) -> threading.Thread:
    def run() -> None:
        try:
            orch.run()
        finally:
            connection.close()

    thread = threading.Thread(target=run, name="orchestrator", daemon=True)
    thread.start()
    return thread


def finish(orch: Orchestrator, thread: threading.Thread) -> None:
    orch.stop()
    thread.join(timeout=10)
    assert not thread.is_alive(), "run() did not return after stop()"


@pytest.fixture
def long_intervals(transactional_db: None) -> None:
    """Managers tick once, then wait a minute unless woken (committed: threads see it)."""
    for key in runner.INTERVAL_KEYS.values():
        config.set_value(key, 60)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.mark.usefixtures("long_intervals")
def test_run_ticks_every_manager_on_its_own_thread_and_records_the_stop(
    recorder: Recorder,
) -> None:
    orch = orchestrator(recorder)
    guard = Deadline(60)

    orch.run(max_seconds=1.0)

    # It returns (max_seconds=1); the generous bound (counted in the machine's time,
    # tests.patience) only turns a hang into a failure.
    assert not guard.expired()
    for kind in KINDS:
        assert recorder.threads(kind) == {f"manager-{kind}"}
        assert recorder.count(kind) == 1
    row = OrchestratorInstance.objects.get(name="test-orchestrator")
    assert row.stopped_at is not None
    assert {kind: row.stats[kind]["ticks"] for kind in KINDS} == dict.fromkeys(KINDS, 1)
    assert row.managers == list(KINDS)


@pytest.mark.usefixtures("long_intervals")
def test_a_wake_up_ticks_only_the_managers_it_names_at_once(recorder: Recorder) -> None:
    orch = orchestrator(recorder)
    thread = start(orch)
    try:
        recorder.wait_for("first ticks", lambda: all(recorder.count(k) == 1 for k in KINDS))

        orch.wake({"workers", "not-a-manager"})

        recorder.wait_for("woken tick", lambda: recorder.count("workers") == 2)
    finally:
        finish(orch, thread)
    assert {kind: recorder.count(kind) for kind in KINDS} == {
        "sessions": 1,
        "workers": 2,
        "missions": 1,
        "etl": 1,
    }
    assert orch.stats_snapshot()["workers"]["ticks"] == 2


@pytest.mark.usefixtures("long_intervals")
def test_a_tick_that_did_work_goes_again_at_once_but_observations_do_not(
    recorder: Recorder,
) -> None:
    orch = orchestrator(
        recorder,
        missions=lambda n: TickResult({"moved": 1} if n <= 3 else {}),
        sessions=lambda n: TickResult({"polled": 5, "checked": 2}),
    )
    thread = start(orch)
    try:
        recorder.wait_for("drained", lambda: recorder.count("missions") == 4)
        recorder.wait_for("the others", lambda: all(recorder.count(k) for k in KINDS))
    finally:
        finish(orch, thread)
    assert recorder.count("missions") == 4  # three with work, the empty one ends the drain
    assert recorder.count("sessions") == 1
    stats = orch.stats_snapshot()
    assert stats["sessions"]["did"] == {"polled": 5, "checked": 2}
    assert stats["missions"]["did"] == {}


@pytest.mark.usefixtures("long_intervals")
def test_a_drain_is_capped_so_a_busy_manager_still_waits_its_interval(
    recorder: Recorder,
) -> None:
    orch = orchestrator(recorder, workers=lambda n: TickResult({"moved": 1}))
    thread = start(orch)
    try:
        recorder.wait_for("capped", lambda: recorder.count("workers") == runner.MAX_DRAIN + 1)
        recorder.wait_for("the others", lambda: all(recorder.count(k) for k in KINDS))
    finally:
        finish(orch, thread)
    assert recorder.count("workers") == runner.MAX_DRAIN + 1


@pytest.mark.usefixtures("long_intervals")
def test_stop_from_another_thread_ends_run_after_the_current_tick(recorder: Recorder) -> None:
    release = threading.Event()

    def slow(n: int) -> TickResult:
        assert release.wait(10), "never released"
        return TickResult({"moved": 1})  # work: it would drain again if not stopping

    orch = orchestrator(recorder, sessions=slow)
    thread = start(orch)
    try:
        recorder.wait_for("all ticking", lambda: all(recorder.count(k) == 1 for k in KINDS))

        orch.stop()
        thread.join(timeout=0.2)
        assert thread.is_alive(), "run() returned while a tick was still running"
        release.set()
        thread.join(timeout=10)
        assert not thread.is_alive()
    finally:
        release.set()
        finish(orch, thread)
    assert {kind: recorder.count(kind) for kind in KINDS} == dict.fromkeys(KINDS, 1)
    assert orch.stats_snapshot()["sessions"]["ticks"] == 1  # the tick finished
    row = OrchestratorInstance.objects.get(name="test-orchestrator")
    assert row.stopped_at is not None
    assert row.stats["sessions"]["did"] == {"moved": 1}


@pytest.mark.usefixtures("long_intervals")
def test_a_manager_whose_tick_raises_keeps_running_beside_the_others(
    recorder: Recorder,
) -> None:
    def boom(n: int) -> TickResult:
        raise RuntimeError(f"boom {n}")

    orch = orchestrator(recorder, workers=boom)
    thread = start(orch)
    try:
        recorder.wait_for("first ticks", lambda: all(recorder.count(k) == 1 for k in KINDS))

        orch.wake({"workers", "missions"})

        recorder.wait_for(
            "second ticks",
            lambda: recorder.count("workers") == 2 and recorder.count("missions") == 2,
        )
    finally:
        finish(orch, thread)
    stats = orch.stats_snapshot()
    assert stats["workers"]["error"] == "RuntimeError: boom 2"
    assert stats["workers"]["ticks"] == 2
    assert stats["missions"]["ticks"] == 2 and "error" not in stats["missions"]
    assert recorder.count("sessions") == 1


@pytest.mark.usefixtures("long_intervals")
def test_a_stop_while_a_manager_loads_its_config_is_not_lost(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    load = config.load

    def load_then_stop() -> config.Config:
        if threading.current_thread().name == "manager-workers" and recorder.count("workers"):
            orch.stop()  # e.g. SIGTERM while this manager reads its config
        return load()

    monkeypatch.setattr(config, "load", load_then_stop)
    orch = orchestrator(recorder, workers=lambda n: TickResult({"moved": 1} if n == 1 else {}))
    thread = start(orch)
    try:
        recorder.wait_for("the first workers tick", lambda: recorder.count("workers") > 0)
        thread.join(timeout=3)
        assert not thread.is_alive()
        # The workers tick that did work would drain at once: the stop came first.
        assert recorder.count("workers") == 1
    finally:
        orch.wake(set(KINDS))  # unstick the sleeping manager so the test can end
        thread.join(timeout=10)


@pytest.mark.django_db
def test_the_heartbeat_writes_the_stats_at_most_every_few_seconds(recorder: Recorder) -> None:
    orch = orchestrator(recorder)
    orch.register()
    orch.stats["workers"]["ticks"] = 5

    orch.heartbeat(force=True)
    orch.stats["workers"]["ticks"] = 6
    orch.heartbeat()  # too soon: skipped

    row = OrchestratorInstance.objects.get(name="test-orchestrator")
    assert row.stats["workers"]["ticks"] == 5
    orch.heartbeat(force=True)
    row.refresh_from_db()
    assert row.stats["workers"]["ticks"] == 6


def test_a_stats_snapshot_is_a_copy(recorder: Recorder) -> None:
    orch = orchestrator(recorder)
    snapshot = orch.stats_snapshot()
    snapshot["workers"]["ticks"] = 99
    assert orch.stats["workers"]["ticks"] == 0


def test_only_observations_are_not_work() -> None:
    assert not TickResult({"polled": 3, "checked": 1}).did_work
    assert not TickResult({"moved": 0}).did_work
    assert TickResult({"polled": 3, "ended": 1}).did_work
    result = TickResult()
    result.add("polled", 2)
    result.add("moved", 0)
    assert result.counts == {"polled": 2} and not result.did_work


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(base, "time", SimpleNamespace(monotonic=clock.monotonic))
    return clock


def test_periodic_is_always_due_without_throttle(clock: Clock) -> None:
    manager = BaseManager("test")
    assert [manager.periodic("poll", 30) for _ in range(3)] == [True, True, True]


def test_periodic_with_throttle_is_due_once_per_interval(clock: Clock) -> None:
    manager = BaseManager("test")
    manager.throttle = True
    assert manager.periodic("poll", 30)
    assert not manager.periodic("poll", 30)
    assert manager.periodic("health", 30)  # each part keeps its own pace
    clock.now += 29.9
    assert not manager.periodic("poll", 30)
    clock.now += 0.1
    assert manager.periodic("poll", 30)
    assert not manager.periodic("poll", 30)


@pytest.mark.django_db
def test_poll_due_comes_sooner_only_while_a_session_is_being_created(clock: Clock) -> None:
    config.set_value("session_tick_s", 60)
    cfg = config.load()
    manager = SessionManager("test")
    manager.throttle = True

    assert manager.poll_due(cfg)
    assert not manager.poll_due(cfg)
    clock.now += CREATING_POLL_S
    assert not manager.poll_due(cfg)  # nothing being created: wait the full interval

    factories.BrowserSessionFactory(status="creating")
    clock.now += CREATING_POLL_S
    assert manager.poll_due(cfg)
    assert not manager.poll_due(cfg)
    clock.now += CREATING_POLL_S
    assert manager.poll_due(cfg)

    # A regular poll counts too: the next one while creating is CREATING_POLL_S later.
    clock.now += 60
    assert manager.poll_due(cfg)
    assert not manager.poll_due(cfg)
    clock.now += CREATING_POLL_S
    assert manager.poll_due(cfg)

    manager.throttle = False
    assert manager.poll_due(cfg)  # a tick called on its own always polls


@pytest.mark.django_db
def test_poll_due_waits_the_full_interval_once_nothing_is_being_created(clock: Clock) -> None:
    config.set_value("session_tick_s", 60)
    cfg = config.load()
    manager = SessionManager("test")
    manager.throttle = True
    assert manager.poll_due(cfg)
    for _ in range(10):
        clock.now += 5.9
        assert not manager.poll_due(cfg)
    clock.now += 1
    assert manager.poll_due(cfg)


@pytest.fixture(autouse=True)
def _stopped(recorder: Recorder) -> Iterator[None]:
    yield
    # No manager thread may outlive its test (they would hold database connections).
    leftovers = [t.name for t in threading.enumerate() if t.name.startswith("manager-")]
    assert leftovers == []


def test_a_tick_that_spanned_a_restart_does_not_log_the_outage_twice(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A lane busy over HTTP through a restart meets its broken connection after another
    lane has already logged the database back: the same outage, not a second one."""
    monkeypatch.setattr(runner, "connection", SimpleNamespace(close=lambda: None))
    orch = orchestrator(recorder)
    orch.stopping.set()  # the backoff waits return at once
    lost = OperationalError("server closed the connection unexpectedly")
    before_restart = time.monotonic()

    orch._database_down(lost, 1, before_restart)  # the first lane to notice
    orch._database_up()  # that lane reconnected
    orch._database_down(lost, 1, before_restart)  # the busy lane, its pass begun before
    orch._database_up()  # its next pass succeeds: nothing to log
    assert caplog.text.count("database unavailable") == 1
    assert caplog.text.count("database reachable again") == 1

    orch._database_down(lost, 1, time.monotonic())  # a pass begun after: a new outage
    assert caplog.text.count("database unavailable") == 2
