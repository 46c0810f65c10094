"""Scale-out on PostgreSQL: three `run_orchestrator` and two `qcluster` processes share
300 missions against the loopback fakes; one orchestrator is stopped mid-run.

Which instance did what is read from each orchestrator's log: the loop logs the
counts of every tick that did work (`orchestrator.runner`, "missions: {...}"), so the
sum over the logs is a complete per-instance account. The qclusters run the ticks as
django-q2 tasks (from `setup_schedules` and from tasks this test enqueues on the ORM
broker); their share is in django-q2's task results.
"""

from __future__ import annotations

import ast
import io
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db.models import Count
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import OrmQ, Task
from django_q.tasks import async_task
from rest_framework.test import APIClient

from orchestrator import actions
from orchestrator.models import Mission, MissionEvent, OrchestratorInstance
from orchestrator.states import MissionStatus
from registry import config
from tests import factories
from tests.e2e.processes import spawn, stop, wait_for
from tests.e2e.test_orchestrator_processes import assert_nothing_double_allocated
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("processes"),
]

MISSIONS = 300
ITEMS = 5
ORCHESTRATORS = [f"scale-{n}" for n in range(3)]
QCLUSTERS = 2
TICK_TASKS = [
    "orchestrator.tasks.tick_missions",
    "orchestrator.tasks.tick_sessions",
    "orchestrator.tasks.tick_workers",
]
FAST = {
    "session_tick_s": 0.3,
    "worker_tick_s": 0.3,
    "mission_tick_s": 0.3,
    "retry_backoff_base_s": 0.0,
    "retry_jitter": 0.0,
    # Long enough that a tick slowed by seven busy processes on two cores keeps its lease.
    "lease_s": 15,
    "proxy_cooldown_s": 0,
    "http_max_attempts": 2,
    "heartbeat_stale_after_s": 30,
}
_TICK = re.compile(r"^(sessions|workers|missions): (\{.*\}) in \d+ ms$")


def setup_fleet(worker: FakeWorker, writer: FakeWriter) -> list[int]:
    for key, value in FAST.items():
        config.set_value(key, value)
    factories.WorkerFactory(base_url=worker.base_url, api_key=worker.api_key, max_sessions=48)
    factories.WriterFactory(base_url=writer.base_url, api_key=writer.api_key, is_default=True)
    for i in range(60):
        factories.ProxyFactory(external_id=f"px-{i}", type="datacenter")
    factories.SiteConfigFactory(
        domain="*", proxy_types=["datacenter"], items_per_job=5, max_sessions=2
    )
    return [
        actions.create_mission(
            name=f"S{m}", urls=[f"https://shop{m % 11}.example/p/{m}/{i}" for i in range(ITEMS)]
        ).pk
        for m in range(MISSIONS)
    ]


def work_done(log: Path) -> Counter[str]:
    """Everything one orchestrator logged having done, as "manager.action" counts."""
    done: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):  # LOG_FORMAT=json
            record = json.loads(line)
            name, message = record.get("logger") or record.get("name"), record.get("message")
        else:  # "<date> <time> LEVEL name message"
            _, _, _, name, message = (line.split(" ", 4) + [""] * 5)[:5]
        match = _TICK.match(message or "") if name == "orchestrator.runner" else None
        if match:
            counts: dict[str, int] = ast.literal_eval(match.group(2))
            done.update({f"{match.group(1)}.{k}": v for k, v in counts.items()})
    return done


def finished(ids: list[int]) -> int:
    return Mission.objects.filter(pk__in=ids, status=MissionStatus.FINALIZADO).count()


def live_instance_names(api: APIClient) -> set[str]:
    response = api.get("/api/execution/orchestrator-status")
    assert response.status_code == 200, response.content
    return {row["name"] for row in response.json()["instances"]}


class TickFeeder:
    """Keeps a few manager ticks queued on the ORM broker for the qclusters."""

    def __init__(self) -> None:
        self.broker = ORM(list_key=Conf.CLUSTER_NAME)
        self.enqueued = 0
        self._last = 0.0

    def feed(self) -> None:
        if time.monotonic() - self._last < 1.0 or OrmQ.objects.count() >= 6:
            return
        self._last = time.monotonic()
        for func in TICK_TASKS:
            # sync=False: the test settings run tasks inline unless told otherwise.
            async_task(func, sync=False, broker=self.broker)
            self.enqueued += 1


def test_three_orchestrators_and_two_qclusters_share_300_missions_and_a_stop_loses_nothing(
    make_fake_worker: Any,
    fake_writer: FakeWriter,
    viewer_api: APIClient,
    tmp_path: Path,
) -> None:
    worker = make_fake_worker(max_sessions=48)
    ids = setup_fleet(worker, fake_writer)
    call_command("setup_schedules", stdout=io.StringIO())
    logs = {name: tmp_path / f"{name}.log" for name in ORCHESTRATORS}
    # One SECRET_KEY for all: django-q2 signs task packages with it, and stored secrets
    # are encrypted with a key derived from it when SECRETS_ENCRYPTION_KEYS is unset.
    # REDIS_URL="" pins the ORM broker whatever the environment says.
    env = {"SECRET_KEY": settings.SECRET_KEY, "LOG_FORMAT": "plain", "REDIS_URL": ""}
    started = time.monotonic()
    orchestrators = {
        name: spawn("run_orchestrator", "--name", name, log=logs[name], **env)
        for name in ORCHESTRATORS
    }
    qclusters = [
        spawn("qcluster", log=tmp_path / f"qcluster-{n}.log", Q_WORKERS="1", **env)
        for n in range(QCLUSTERS)
    ]
    feeder = TickFeeder()
    stopped = ORCHESTRATORS[2]
    codes: dict[str, int] = {}
    try:
        wait_for(
            lambda: live_instance_names(viewer_api) == set(ORCHESTRATORS),
            30,
            "orchestrator-status listing the three instances",
        )

        def a_third_done() -> bool:
            feeder.feed()
            return finished(ids) >= MISSIONS // 3

        wait_for(a_third_done, 120, "a third of the missions FINALIZADO")
        assert finished(ids) < MISSIONS, "too fast to stop one mid-run"
        codes[stopped] = stop(orchestrators[stopped], timeout=40)
        assert live_instance_names(viewer_api) == set(ORCHESTRATORS) - {stopped}

        def all_done() -> bool:
            feeder.feed()
            return finished(ids) == MISSIONS

        wait_for(all_done, 150, f"{MISSIONS} missions FINALIZADO")
        elapsed = time.monotonic() - started
        assert all(q.poll() is None for q in qclusters), "a qcluster died"
    finally:
        for name, proc in orchestrators.items():
            codes.setdefault(name, stop(proc, timeout=40))
        q_codes = [stop(q, timeout=40) for q in qclusters]

    assert codes == dict.fromkeys(ORCHESTRATORS, 0), {n: logs[n].read_text()[-2000:] for n in logs}
    assert q_codes == [0] * QCLUSTERS, (tmp_path / "qcluster-0.log").read_text()[-2000:]

    # Every mission finished exactly once: all records stored, none twice.
    assert sum(fake_writer.stored_count(m) for m in ids) == MISSIONS * ITEMS
    # Nothing scraped twice: one remote job per job key, each item in exactly one job.
    # (A repeated idempotent request after a timeout under load is allowed: it creates
    # nothing new, and the writer dedupes a re-delivered page.)
    assert len(worker.jobs) == len(set(worker.job_keys_seen))
    assert sum(len(job.items) for job in worker.jobs.values()) == sum(
        Mission.objects.get(pk=m).total_items for m in ids
    )
    per_transition = (
        MissionEvent.objects.filter(mission_id__in=ids, kind="transition")
        .values("mission_id", "to_status")
        .annotate(n=Count("id"))
    )
    assert {row["n"] for row in per_transition} == {1}
    assert_nothing_double_allocated()

    # The work was spread: at least two orchestrators ran jobs and did session work, and
    # every one did some work. Which instance wins a given claim is a race (a session
    # opened by one is often polled and closed by another; on a loaded machine a slow
    # instance may win no job or no session at all), so no single action is asked of
    # every instance.
    done = {name: work_done(logs[name]) for name in ORCHESTRATORS}
    for name, counts in done.items():
        assert sum(counts.values()) > 0, (name, counts)
    busy = [
        name
        for name, c in done.items()
        if c["workers.jobs_started"] > 0
        and any(k.startswith("sessions.") and v for k, v in c.items())
    ]
    assert len(busy) >= 2, done
    assert sum(c["missions.allocated"] > 0 for c in done.values()) >= 2, done
    # The qclusters ran manager ticks next to the orchestrators, and none failed.
    tick_tasks = Task.objects.filter(func__in=TICK_TASKS)
    failed = list(tick_tasks.filter(success=False).values_list("func", "result")[:5])
    assert not failed, failed
    q_done: Counter[str] = Counter()
    for func, result in tick_tasks.values_list("func", "result"):
        q_done.update({f"{func.rsplit('_', 1)[1]}.{k}": v for k, v in (result or {}).items()})
    assert tick_tasks.count() > 0
    # Allocation is counted once per mission, whoever did it.
    allocated = sum(c["missions.allocated"] for c in done.values()) + q_done["missions.allocated"]
    assert allocated == MISSIONS
    opened = sum(c["sessions.opened"] for c in done.values()) + q_done["sessions.opened"]
    assert opened > 0, (done, q_done)

    instances = OrchestratorInstance.objects.filter(name__in=ORCHESTRATORS)
    assert all(i.stopped_at is not None for i in instances)
    print(
        f"\n{MISSIONS} missions x {ITEMS} items in {elapsed:.1f}s "
        f"({MISSIONS * ITEMS / elapsed:.0f} items/s); "
        + "; ".join(
            f"{n}: allocated {c['missions.allocated']}, jobs {c['workers.jobs_started']}, "
            f"finalized {c['missions.finalized']}"
            for n, c in done.items()
        )
        + f"; qclusters: {tick_tasks.count()} tick tasks, allocated "
        f"{q_done['missions.allocated']}, jobs {q_done['workers.jobs_started']} "
        f"(enqueued by the test: {feeder.enqueued})"
    )
