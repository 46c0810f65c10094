"""Issue #15, case 6, with real processes: a 6-item mission, `items_per_job` 2, on the
built-in worker (`run_localnode` behind `runserver`) and a real `run_orchestrator` at
the default tick intervals (workers 10 s, sessions 5 s, missions 10 s).

Small jobs must not wait on the clock: the WorkerManager follows running jobs at a
short, growing interval (`orchestrator.job_polling`) instead of the 10 s tick. The time
from creation to FINALIZADO is printed (run with -s) and recorded in
docs/reliability.md; the test asserts the outcome and counts, not a wall-clock bound.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from localnode.models import LocalJob, LocalRecord
from orchestrator import actions
from orchestrator.models import Mission, MissionEvent
from orchestrator.states import MissionStatus
from registry import config
from registry.forward_proxy import ForwardProxy
from tests import factories
from tests.e2e.processes import spawn, stop, wait_for
from tests.e2e.test_localnode_end_to_end import KEY, free_port, server_up

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("processes"),
]


def test_a_six_item_mission_of_two_item_jobs_does_not_wait_on_the_worker_tick(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"LOCALNODE_ENABLED": "1", "LOCALNODE_API_KEY": KEY}
    proxy = ForwardProxy(username="demo", password="demo-pass").start()
    web = spawn("runserver", f"127.0.0.1:{port}", "--noreload", log=tmp_path / "web.log", **env)
    runner = spawn("run_localnode", log=tmp_path / "localnode.log", **env)
    orchestrator = None
    try:
        wait_for(lambda: server_up(base), 120, "the web server")
        assert config.get("worker_tick_s") == 10.0  # the defaults, not a fast test setup
        config.set_value("proxy_cooldown_s", 0)
        factories.WorkerFactory(base_url=f"{base}/local/worker/api/v1", api_key=KEY)
        factories.WriterFactory(
            base_url=f"{base}/local/writer/api/v1", api_key=KEY, is_default=True
        )
        host, proxy_port = proxy.server_address[:2]
        factories.ProxyFactory(
            external_id="loop-0",
            type="datacenter",
            host=host,
            port=proxy_port,
            username="demo",
            password="demo-pass",
            max_sessions=2,
        )
        factories.SiteConfigFactory(
            domain="*", proxy_types=["datacenter"], items_per_job=2, max_sessions=1
        )
        orchestrator = spawn("run_orchestrator", log=tmp_path / "orchestrator.log")
        # The orchestrator is up and idle (heartbeat written) before the clock starts.
        from orchestrator.models import OrchestratorInstance

        wait_for(lambda: OrchestratorInstance.objects.exists(), 60, "the orchestrator")
        time.sleep(1.0)
        started = time.monotonic()
        mission = actions.create_mission(
            name="Seis itens", urls=[f"{base}/local/demo/p/{n}/" for n in range(1, 7)]
        )
        wait_for(
            lambda: (
                Mission.objects.get(pk=mission.pk).status
                in (MissionStatus.FINALIZADO, MissionStatus.ERRO)
            ),
            120,
            "the mission to finish",
            poll=0.05,
        )
        took = time.monotonic() - started
    finally:
        codes = [stop(p) for p in (orchestrator, runner, web) if p is not None]
        proxy.stop()
    mission.refresh_from_db()
    log = (tmp_path / "orchestrator.log").read_text()
    assert mission.status == MissionStatus.FINALIZADO, log[-3000:]
    assert mission.done_items == 6
    assert LocalRecord.objects.filter(mission_id=mission.pk).count() == 6
    jobs = MissionEvent.objects.filter(mission=mission, kind=MissionEvent.Kind.JOB).count()
    t0 = mission.created_at
    for event in MissionEvent.objects.filter(mission=mission).order_by("created_at", "id"):
        print(f"  +{(event.created_at - t0).total_seconds():6.2f}s {event.message}")
    for job in LocalJob.objects.order_by("created_at"):
        print(
            f"  worker job {job.created_at - t0} queued, started "
            f"{job.started_at and job.started_at - t0}, finished {job.finished_at and job.finished_at - t0}"
        )
    print(f"\n6 items, items_per_job 2: FINALIZADO {took:.1f}s after creation ({jobs} job events)")
    assert codes[0] == 0
