"""Issue #15, case 5, with two real `run_orchestrator` processes on PostgreSQL: the test
cancels and retries missions, one at a time and in bulk (`apply_bulk`, as the API
does), while both run them against the loopback fake worker (jobs kept running).

Asserted: no deadlock (the database's `pg_stat_database.deadlocks` for the test
database does not move, and neither orchestrator logs one), every cancelled mission's
sessions closed on the worker, no job started after a mission's last cancel.
MC_CANCEL_PROC_ROUNDS (default 30) sets the rounds; docs/reliability.md has figures."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from rest_framework.exceptions import APIException

from orchestrator import actions
from orchestrator.actions import ActionError
from orchestrator.api import apply_bulk
from orchestrator.models import BrowserSession, Mission, MissionEvent
from orchestrator.states import CANCELLABLE, RETRYABLE_BY_OPERATOR, MissionStatus
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

ROUNDS = int(os.environ.get("MC_CANCEL_PROC_ROUNDS", "30"))
FAST = fast_settings(0.3)


def deadlocks() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return int(cur.fetchone()[0])


def act(missions: list[int], rng: random.Random, request: Any, did: dict[str, int]) -> None:
    picked = rng.sample(missions, 2) if rng.random() < 0.5 else [rng.choice(missions)]
    status = {m.pk: m.status for m in Mission.objects.filter(pk__in=picked)}
    kind = "cancel" if all(s in CANCELLABLE for s in status.values()) else "retry"
    if kind == "retry" and not all(s in RETRYABLE_BY_OPERATOR for s in status.values()):
        return
    try:
        if len(picked) == 2:
            apply_bulk({"action": kind, "ids": sorted(picked)}, request)
            did[f"bulk_{kind}"] += 1
        else:
            mission = Mission.objects.get(pk=picked[0])
            fn = actions.cancel_mission if kind == "cancel" else actions.retry_mission
            fn(mission, actor="teste")
            did[kind] += 1
    except (ActionError, APIException):
        did["refused"] += 1  # it moved meanwhile: fine


def test_cancel_and_bulk_retry_while_two_orchestrators_run_them(
    fake_worker: FakeWorker, fake_writer: FakeWriter, tmp_path: Path
) -> None:
    register_fleet(
        fake_worker, fake_writer, settings=FAST, proxies=8, items_per_job=2, max_sessions=2
    )
    fake_worker.item_latency = 5.0  # jobs keep running: cancels meet live sessions
    missions = [
        actions.create_mission(
            name=f"Corrida {m}", urls=[f"https://c{m}.example/p/{i}" for i in range(6)]
        ).pk
        for m in range(6)
    ]
    request = SimpleNamespace(user=factories.UserFactory(username="operador"))
    before = deadlocks()
    procs = [
        spawn("run_orchestrator", "--name", f"race-{n}", log=tmp_path / f"orch-{n}.log")
        for n in (1, 2)
    ]
    rng = random.Random(15)
    did = {"cancel": 0, "retry": 0, "bulk_cancel": 0, "bulk_retry": 0, "refused": 0}
    started = time.monotonic()
    try:
        wait_for(lambda: BrowserSession.objects.filter(job_status="running").exists(), 120, "a job")
        for _ in range(ROUNDS):
            act(missions, rng, request, did)
            time.sleep(rng.uniform(0.1, 0.6))
        left = list(
            Mission.objects.filter(pk__in=missions, status__in=CANCELLABLE).values_list(
                "pk", flat=True
            )
        )
        if left:
            apply_bulk({"action": "cancel", "ids": sorted(left)}, request)
        wait_for(
            lambda: (
                not BrowserSession.objects.filter(mission__in=missions, holds_slot=True).exists()
            ),
            120,
            "every cancelled session closed",
        )
        took = time.monotonic() - started
    finally:
        codes = [stop(p) for p in procs]
    logs = "".join((tmp_path / f"orch-{n}.log").read_text() for n in (1, 2))
    assert codes == [0, 0], logs[-3000:]
    time.sleep(1.0)  # the servers' backends flush their statistics
    found = deadlocks() - before
    keys = set(
        BrowserSession.objects.filter(mission__in=missions).values_list("session_key", flat=True)
    )
    print(
        f"\ncancel race, 2 processes: {ROUNDS} rounds in {took:.1f}s, {did}, "
        f"{len(keys)} sessions, deadlocks {found}"
    )
    assert found == 0
    assert "deadlock" not in logs.lower()
    assert did["cancel"] + did["bulk_cancel"] >= 2 and did["retry"] + did["bulk_retry"] >= 1, did
    assert not [s for s in fake_worker.sessions.values() if s.active and s.session_key in keys]
    ended = dict(Mission.objects.filter(pk__in=missions).values_list("pk", "status"))
    # A mission left alone long enough may finish first; none is left running.
    assert set(ended.values()) <= {MissionStatus.CANCELADO, MissionStatus.FINALIZADO}, ended
    for mission in Mission.objects.filter(pk__in=missions, status=MissionStatus.CANCELADO):
        cancelled_at = (
            MissionEvent.objects.filter(mission=mission, to_status=MissionStatus.CANCELADO)
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        assert cancelled_at is not None
        late = MissionEvent.objects.filter(
            mission=mission, kind=MissionEvent.Kind.JOB, created_at__gt=cancelled_at
        ).filter(message__contains="iniciado")
        assert not late.exists(), list(late.values_list("message", "created_at"))
