"""Issue #15, case 3, with a real `run_orchestrator`: a site whose every session fails as
soon as its job starts (`proxy_connect_failed`, a proxy fault), `max_session_rotations`
1, `max_retries` 2, backoff 2-5 s, the site breaker at its defaults (5 failed sessions
pause the domain for 900 s).

Asserted: the mission ends ERRO `SESSION_ROTATIONS_EXHAUSTED` within 60 s of its
creation (it took ~920 s when the breaker counted proxy faults), at most 6 sessions
opened, none after the end, the domain never paused, every failed session blamed on its
proxy. The time is printed (run with -s) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator import actions
from orchestrator.models import DomainBreaker, Mission, MissionEvent, OrchestratorInstance
from orchestrator.states import ErrorCode, MissionStatus
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

SETTINGS = {
    "session_tick_s": 0.5,
    "worker_tick_s": 0.5,
    "mission_tick_s": 0.5,
    "max_session_rotations": 1,
    "max_retries": 2,
    "retry_backoff_base_s": 2.0,
    "retry_backoff_cap_s": 5.0,
    "retry_jitter": 0.0,
}
FIGURE_S = 60.0


def test_a_site_failed_by_its_proxies_errs_in_seconds_without_pausing_it(
    fake_worker: FakeWorker, fake_writer: FakeWriter, tmp_path: Path
) -> None:
    register_fleet(
        fake_worker, fake_writer, settings=SETTINGS, proxies=8, items_per_job=5, max_sessions=1
    )
    fake_worker.fail_sessions_on_job = "proxy_connect_failed"
    proc = spawn("run_orchestrator", "--name", "orch-case3", log=tmp_path / "orch.log")
    try:
        wait_for(
            lambda: OrchestratorInstance.objects.filter(name="orch-case3").exists(),
            60,
            "the orchestrator running",
        )
        t0 = time.monotonic()
        mission = actions.create_mission(
            name="Proxy ruim", urls=[f"https://inalcancavel.example/p/{i}" for i in range(10)]
        )
        wait_for(
            lambda: Mission.objects.get(pk=mission.pk).status == MissionStatus.ERRO,
            FIGURE_S,
            "the mission ERRO",
        )
        erro_s = time.monotonic() - t0
        opened_at_end = len(fake_worker.sessions)
        time.sleep(5)  # ten ticks: nothing more is opened for a mission that ended
        opened = len(fake_worker.sessions)
    finally:
        code = stop(proc)
    assert code == 0, (tmp_path / "orch.log").read_text()[-3000:]
    mission.refresh_from_db()
    print(
        f"\nCASE3 ERRO after {erro_s:.1f}s; sessions opened {opened} ({opened_at_end} at the end)"
    )
    assert mission.error_code == ErrorCode.SESSION_ROTATIONS_EXHAUSTED.value
    assert mission.attempt == 3
    assert opened == opened_at_end <= 6
    assert not fake_worker.active_sessions()
    assert not DomainBreaker.objects.filter(trips__gt=0).exists()
    ended = MissionEvent.objects.filter(
        mission=mission, kind="session", error_code__startswith="SESSION_"
    ).values_list("error_code", "data__fault", "message")
    assert {fault for _, fault, _ in ended} == {"proxy"}, list(ended)
