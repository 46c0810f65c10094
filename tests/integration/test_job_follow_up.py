"""Issue #15 case 6 through the orchestrator's real loop (manager threads, real HTTP to
the loopback fake worker), over a bounded real interval: a running job is followed more
often than the 10 s tick, an idle fleet makes no more requests than before. Counts are
asserted, never durations."""

from __future__ import annotations

import pytest
from django.db import connection

from orchestrator import actions, job_polling
from orchestrator.models import BrowserSession
from orchestrator.runner import Orchestrator
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.integration.engine_helpers import build_fleet

pytestmark = [pytest.mark.django_db(transaction=True)]

WINDOW_S = 4.0


def run_loop(seconds: float) -> None:
    orch = Orchestrator(name="follow-up", use_notify=False)
    try:
        orch.run(max_seconds=seconds)
    finally:
        connection.close()


def routes(fake: FakeWorker) -> dict[str, int]:
    return dict(fake.route_counts)


def test_a_running_job_is_followed_sooner_than_the_tick(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("manager threads share no in-memory SQLite database")
    fleet = build_fleet(fake_worker, fake_writer, items_per_job=2, max_sessions=1)
    fake_worker.jobs_paused = True  # the job stays running for the whole window
    actions.create_mission(name="Segue", urls=["https://example.com/a", "https://example.com/b"])
    fleet.drive(lambda: BrowserSession.objects.filter(job_status="running").exists())
    fake_worker.reset_calls()
    run_loop(WINDOW_S)  # worker_tick_s is its default, 10 s
    polls = fake_worker.route_counts["GET /jobs/{id}/results"]
    # The policy's schedule over the window, plus the loop's first tick.
    schedule, t, step = 0, job_polling.FIRST_S, job_polling.FIRST_S
    while t <= WINDOW_S:
        schedule += 1
        step *= job_polling.GROWTH
        t += step
    print(f"\nGET results in {WINDOW_S:g}s with the job running: {polls} (schedule {schedule})")
    assert 2 <= polls <= schedule + 1, routes(fake_worker)


def test_an_idle_fleet_makes_no_more_requests_than_the_tick_allows(
    fake_worker: FakeWorker, fake_writer: FakeWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("manager threads share no in-memory SQLite database")
    build_fleet(fake_worker, fake_writer, overrides={"worker_tick_s": 1.0})
    fake_worker.reset_calls()
    run_loop(WINDOW_S)
    now = routes(fake_worker)
    # The same window with the follow-ups switched off: the loop as it was before.
    monkeypatch.setattr(job_polling.JobPolls, "next_in", lambda self, cap_s: None)
    fake_worker.reset_calls()
    run_loop(WINDOW_S)
    before = routes(fake_worker)
    print(f"\nidle {WINDOW_S:g}s, worker_tick_s 1: requests {now} (without follow-ups {before})")
    assert not any("/jobs" in route for route in now)
    assert sum(now.values()) <= WINDOW_S / 1.0 + 1
    assert set(now) <= set(before) | {"GET /health"}
