"""The domain cap holds across orchestrator processes: two `run_orchestrator`
processes, five missions on one domain capped at 3 live sessions. Sampled continuously
from the database (sessions holding a slot on the domain) and from the worker itself
(its open sessions), the count never exceeds 3, and every mission finishes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator import actions
from orchestrator.models import BrowserSession, Mission
from orchestrator.states import MissionStatus
from registry import config
from tests import factories
from tests.e2e.processes import spawn, stop
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.patience import Deadline

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("processes"),
]

FAST = {
    "session_tick_s": 0.2,
    "worker_tick_s": 0.3,
    "mission_tick_s": 0.2,
    "retry_backoff_base_s": 0.0,
    "retry_jitter": 0.0,
    "lease_s": 5,
    "proxy_cooldown_s": 0,
}
CAP = 3
# Generous: the two CPU cores are shared with other test runs.
DEADLINE_S = 240


def test_two_orchestrators_never_exceed_the_domain_cap(
    make_fake_worker, fake_writer: FakeWriter, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    worker: FakeWorker = make_fake_worker(max_sessions=32, item_latency=0.15)
    for key, value in FAST.items():
        config.set_value(key, value)
    factories.WorkerFactory(base_url=worker.base_url, api_key=worker.api_key, max_sessions=32)
    factories.WriterFactory(
        base_url=fake_writer.base_url, api_key=fake_writer.api_key, is_default=True
    )
    for i in range(10):
        factories.ProxyFactory(external_id=f"px-{i}", type="datacenter", max_sessions=2)
    # Each mission alone would open 3 sessions (max_sessions): 5 missions want 15.
    factories.SiteConfigFactory(domain="*", items_per_job=2, max_sessions=3)
    factories.SiteConfigFactory(domain="shop.example", max_concurrent_sessions=CAP)
    ids = [
        actions.create_mission(
            name=f"M{m}", urls=[f"https://shop.example/p/{m}/{i}" for i in range(8)]
        ).pk
        for m in range(5)
    ]
    procs = [
        spawn("run_orchestrator", "--name", f"cap-{n}", log=tmp_path / f"cap-{n}.log")
        for n in range(2)
    ]
    held_samples: list[int] = []
    remote_samples: list[int] = []
    try:
        deadline = Deadline(DEADLINE_S)
        while not deadline.expired():
            held_samples.append(
                BrowserSession.objects.filter(domain="shop.example", holds_slot=True).count()
            )
            remote_samples.append(len(worker.active_sessions()))
            done = Mission.objects.filter(pk__in=ids, status=MissionStatus.FINALIZADO).count()
            if done == len(ids):
                break
            time.sleep(0.05)
    finally:
        codes = [stop(p) for p in procs]
    log = (tmp_path / "cap-0.log").read_text()[-3000:]
    assert codes == [0, 0], log
    statuses = {
        m: (status, reason)
        for m, status, reason in Mission.objects.filter(pk__in=ids).values_list(
            "id", "status", "wait_reason"
        )
    }
    assert {s for s, _ in statuses.values()} == {MissionStatus.FINALIZADO}, (statuses, log)
    assert max(held_samples) <= CAP, held_samples
    assert max(remote_samples) <= CAP, remote_samples
    # The cap was actually reached (the test would prove nothing otherwise).
    assert max(held_samples) == CAP
    assert len(held_samples) > 20
    assert sum(fake_writer.stored_count(m) for m in ids) == 40
