"""Issue #15, case 4, with a real `run_orchestrator` on PostgreSQL: the only proxy at
first answers `blocked` for every page; two good proxies are registered a second later.

Each run (MC_CASE4_RUNS, default 1; the figures in docs/reliability.md are 10 runs in a
row) uses its own site and its own three proxies (the previous run's are disabled).
Asserted per run: FINALIZADO with all 30 records at the writer; no job started and no
session opened on the bad proxy after it was blocked for the site."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest

from orchestrator import actions
from orchestrator.models import BrowserSession, Mission, MissionEvent, ProxyDomainHealth
from orchestrator.states import MissionStatus
from registry import config
from registry.models import Proxy
from tests import factories
from tests.e2e.processes import spawn, stop, wait_for
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.fleet import fast_settings, register_fleet

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("processes"),
]

RUNS = int(os.environ.get("MC_CASE4_RUNS", "1"))
FAST = fast_settings(0.5)


def one_run(n: int, fake_worker: FakeWorker, fake_writer: FakeWriter) -> tuple[float, int]:
    Proxy.objects.update(enabled=False)
    bad = f"bad-{n}"
    factories.ProxyFactory(external_id=bad, type="datacenter")
    fake_worker.blocked_proxies = {bad}
    domain = f"s{n}.example"
    mission = actions.create_mission(
        name=f"Bloqueado {n}", urls=[f"https://{domain}/p/{i}" for i in range(30)]
    )
    started = time.monotonic()
    wait_for(
        lambda: BrowserSession.objects.filter(mission=mission, job_status="running").exists(),
        120,
        "a first job on the bad proxy",
        poll=0.05,
    )
    time.sleep(1.0)
    for i in (1, 2):
        factories.ProxyFactory(external_id=f"good-{n}-{i}", type="datacenter")
    wait_for(
        lambda: (
            Mission.objects.get(pk=mission.pk).status
            in (MissionStatus.FINALIZADO, MissionStatus.ERRO)
        ),
        300,
        f"run {n}: the mission to end",
    )
    took = time.monotonic() - started
    mission.refresh_from_db()
    assert (mission.status, mission.done_items) == (MissionStatus.FINALIZADO, 30), (
        mission.status,
        mission.error_code,
        mission.done_items,
    )
    assert fake_writer.stored_count(mission.pk) == 30
    row = ProxyDomainHealth.objects.get(proxy__external_id=bad, domain=domain)
    assert row.blocked_until is not None
    blocked_at = row.blocked_until - dt.timedelta(seconds=config.load().proxy_health_block_s)
    bad_keys = set(
        BrowserSession.objects.filter(mission=mission, proxy_external_id=bad).values_list(
            "session_key", flat=True
        )
    )
    after_block = [
        e.message
        for e in MissionEvent.objects.filter(
            mission=mission, kind=MissionEvent.Kind.JOB, created_at__gt=blocked_at
        )
        if "iniciado" in e.message and str(e.data.get("job_key", "")).rsplit("-j", 1)[0] in bad_keys
    ]
    assert after_block == []
    assert not BrowserSession.objects.filter(
        mission=mission, proxy_external_id=bad, created_at__gt=blocked_at
    ).exists()
    bad_jobs = sum(
        1 for j in fake_worker.jobs.values() if fake_worker.sessions[j.session_id].proxy_id == bad
    )
    return took, bad_jobs


def test_a_proxy_blocked_for_the_site_is_replaced_and_every_item_is_stored(
    fake_worker: FakeWorker, fake_writer: FakeWriter, tmp_path: Path
) -> None:
    register_fleet(
        fake_worker, fake_writer, settings=FAST, proxies=0, items_per_job=2, max_sessions=1
    )
    fake_worker.item_latency = 0.05
    proc = spawn("run_orchestrator", "--name", "orch-case4", log=tmp_path / "orch.log")
    figures = []
    try:
        for n in range(RUNS):
            figures.append(one_run(n, fake_worker, fake_writer))
    finally:
        code = stop(proc)
    assert code == 0, (tmp_path / "orch.log").read_text()[-3000:]
    for n, (took, bad_jobs) in enumerate(figures):
        print(f"\nrun {n}: FINALIZADO 30/30 in {took:.1f}s; jobs on the bad proxy {bad_jobs}")
