"""A run_orchestrator SIGSTOPped inside an external call, past its lease, while another
process takes over and finishes the mission: when it wakes up, its writes are fenced
out (0 rows, `STALE_LEASE` in its log) and the database is exactly as the successor
left it (PostgreSQL, real processes)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from django.db.models.functions import Now

from orchestrator import actions
from orchestrator.models import BrowserSession, Mission, MissionEvent, MissionItem
from orchestrator.states import MissionStatus
from registry.models import Proxy, Worker
from tests.e2e.processes import pause, process_state, resume, spawn, stop, wait_for
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.fleet import register_fleet

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("processes"),
]

LEASE_S = 5  # the smallest lease the config accepts
CONFIG = {
    "session_tick_s": 0.2,
    "worker_tick_s": 0.2,
    "mission_tick_s": 0.2,
    "lease_s": LEASE_S,
    "proxy_cooldown_s": 0,
    "retry_backoff_base_s": 0.0,
    "retry_jitter": 0.0,
    # The paused call must still succeed when the process wakes up (CLOCK_MONOTONIC runs
    # on while a process is stopped), so that the write after it is attempted and fenced.
    "http_read_timeout_s": 120.0,
    "http_deadline_s": 240.0,
    "http_max_attempts": 1,
}
ITEMS = 10
LIFECYCLE = [
    MissionStatus.QUEUED,
    MissionStatus.ATRIBUIDO,
    MissionStatus.EXTRAINDO,
    MissionStatus.ARMAZENANDO,
    MissionStatus.FINALIZADO,
]


def snapshot(mission_id: int) -> dict[str, Any]:
    """What a stale write could corrupt: the mission, its items, sessions and events."""
    return {
        "mission": list(
            Mission.objects.filter(pk=mission_id).values(
                "status",
                "attempt",
                "done_items",
                "failed_items",
                "records_delivered",
                "finalizado_at",
                "wait_reason",
                "lease_token",
                "locked_by",
            )
        ),
        "items": list(
            MissionItem.objects.filter(mission_id=mission_id)
            .order_by("id")
            .values("id", "status", "session_id", "job_key", "attempts", "finished_at")
        ),
        "sessions": list(
            BrowserSession.objects.filter(mission_id=mission_id)
            .order_by("id")
            .values(
                "id",
                "status",
                "holds_slot",
                "lease_token",
                "locked_by",
                "job_key",
                "job_status",
                "job_cursor",
                "job_pages",
                "jobs_done",
                "items_done",
                "items_failed",
            )
        ),
        "events": MissionEvent.objects.filter(mission_id=mission_id).count(),
        "worker_slots": Worker.objects.get().active_sessions,
        "proxy_slots": sorted(Proxy.objects.values_list("active_sessions", flat=True)),
    }


def test_an_orchestrator_paused_past_its_lease_writes_nothing_when_it_wakes_up(
    fake_worker: FakeWorker, fake_writer: FakeWriter, tmp_path: Path
) -> None:
    register_fleet(
        fake_worker, fake_writer, settings=CONFIG, proxies=2, items_per_job=ITEMS, max_sessions=1
    )
    mission_id = actions.create_mission(
        name="Pausada", urls=[f"https://shop.example/p/{i}" for i in range(ITEMS)]
    ).pk
    # The first page of records reaches the writer and waits there, unanswered: the
    # process that sent it holds the session's lease across the call.
    fake_writer.hold_next("POST", r"/batches$")
    logs = {name: tmp_path / f"{name}.log" for name in ("paused", "successor")}

    # Frozen anywhere, maybe between two statements of a transaction: the server ends
    # that transaction after this long, so its row locks never block the successor.
    idle_tx = {"ORCHESTRATOR_IDLE_TX_TIMEOUT_S": str(2 * LEASE_S)}
    paused = spawn("run_orchestrator", "--name", "paused", log=logs["paused"], **idle_tx)
    successor = None
    try:
        wait_for(lambda: fake_writer.holding == 1, 90, "the first page held at the writer")
        pause(paused)
        paused_at = time.monotonic()
        (held,) = BrowserSession.objects.filter(mission_id=mission_id, locked_by="paused")
        # Only the database clock decides when the lease is over.
        wait_for(
            lambda: BrowserSession.objects.filter(pk=held.pk, locked_until__lt=Now()).exists(),
            3 * LEASE_S,
            "the paused process's lease to expire",
        )

        successor = spawn("run_orchestrator", "--name", "successor", log=logs["successor"])
        wait_for(
            lambda: (
                Mission.objects.filter(pk=mission_id, status=MissionStatus.FINALIZADO).exists()
                and not BrowserSession.objects.filter(holds_slot=True).exists()
            ),
            90,
            "the successor to finish the mission and close its session",
        )
        assert stop(successor) == 0, logs["successor"].read_text()[-3000:]
        assert process_state(paused.pid) in ("T", "t"), "the paused process woke up early"
        before = snapshot(mission_id)

        # Wake it up and let its call return: the writer answers the held page now.
        resume(paused)
        fake_writer.release_held()
        pause_s = time.monotonic() - paused_at
        wait_for(lambda: "STALE_LEASE" in logs["paused"].read_text(), 60, "STALE_LEASE")
        wait_for(lambda: fake_writer.holding == 0, 10, "the held request answered")
    finally:
        # A stopped process only sees SIGTERM once continued; on a failure above it may
        # still be stopped. The successor is stopped whatever happens to the other.
        if paused.poll() is None and process_state(paused.pid) in ("T", "t"):
            resume(paused)
        try:
            codes = {"paused": stop(paused)}
        finally:
            if successor is not None:
                codes_successor = stop(successor)
        if successor is not None:
            codes["successor"] = codes_successor
    paused_log = logs["paused"].read_text()
    assert codes == {"paused": 0, "successor": 0}, paused_log[-3000:]

    # The stale process changed nothing: every row is as the successor left it.
    assert snapshot(mission_id) == before
    assert "tick failed" not in paused_log + logs["successor"].read_text()
    refused = paused_log.count("STALE_LEASE")
    assert refused >= 1

    mission = Mission.objects.get(pk=mission_id)
    assert (mission.status, mission.attempt) == (MissionStatus.FINALIZADO, 1)
    assert mission.done_items == mission.records_delivered == ITEMS
    assert set(MissionItem.objects.filter(mission=mission).values_list("status", flat=True)) == {
        "done"
    }
    # One pass through the lifecycle: every transition once, in order.
    history = list(
        MissionEvent.objects.filter(mission=mission, kind=MissionEvent.Kind.TRANSITION)
        .order_by("id")
        .values_list("to_status", flat=True)
    )
    assert history == LIFECYCLE

    # The writer holds each record once; the paused page arrived twice (the successor's
    # re-read of the same page, then the stale one), deduped by its batch key.
    assert fake_writer.stored_count(mission_id) == len(fake_writer.records) == ITEMS
    assert sum(b.stored for b in fake_writer.batches.values()) == ITEMS
    assert [c.status for c in fake_writer.complete_calls] == [200]
    # One session and one job at the worker; nothing scraped twice.
    assert len(fake_worker.sessions) == BrowserSession.objects.count() == 1
    assert len(fake_worker.jobs) == len(set(fake_worker.job_keys_seen)) == 1
    assert sum(len(job.items) for job in fake_worker.jobs.values()) == ITEMS
    assert not fake_worker.active_sessions()
    print(
        f"\npaused {pause_s:.1f}s with a {LEASE_S}s lease; "
        f"{refused} stale write(s) refused (STALE_LEASE)"
    )
