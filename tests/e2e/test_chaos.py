"""Chaos: orchestrators killed, paused and stopped on a seeded schedule while the fake
worker and writer inject faults; afterwards a checker proves that every mission ended,
nothing was lost or stored twice, transitions were legal and retries bounded.

CI runs a small count; `make chaos` a large one (CHAOS_MISSIONS, CHAOS_SECONDS,
CHAOS_SEED). The figures of the last large run are in docs/reliability.md.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from orchestrator import actions, states
from orchestrator.models import BrowserSession, Mission, MissionEvent, MissionItem
from orchestrator.states import ItemStatus, MissionStatus
from registry import config
from registry.models import Proxy, Worker
from tests import factories
from tests.e2e.processes import spawn, stop, wait_for
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.chaos,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("processes"),
]

MISSIONS = int(os.environ.get("CHAOS_MISSIONS", "30"))
CHAOS_SECONDS = float(os.environ.get("CHAOS_SECONDS", "45"))
SEED = int(os.environ.get("CHAOS_SEED", "20261122"))
ORCHESTRATORS = 3


def stuck_report(ids: list[int]) -> str:
    """What the missions that did not end are waiting on, for the failure message."""
    stuck = Mission.objects.filter(pk__in=ids).exclude(status__in=states.TERMINAL)
    lines = [f"{stuck.count()} missions not terminal:"]
    for m in stuck.order_by("id")[:10]:
        sessions = Counter(
            BrowserSession.objects.filter(mission=m).values_list("status", "holds_slot")
        )
        items = Counter(MissionItem.objects.filter(mission=m).values_list("status", flat=True))
        lines.append(
            f"  #{m.pk} {m.status} attempt={m.attempt} locked_by={m.locked_by!r} "
            f"locked_until={m.locked_until} next_attempt_at={m.next_attempt_at} "
            f"wait={m.wait_reason!r} items={dict(items)} sessions={dict(sessions)}"
        )
    for w in Worker.objects.all():
        lines.append(
            f"  worker {w.name}: active={w.active_sessions}/{w.max_sessions} "
            f"health={w.health_status} failures={w.consecutive_failures} "
            f"open_until={w.circuit_open_until}"
        )
    busy = Proxy.objects.filter(active_sessions__gt=0).count()
    holding = BrowserSession.objects.filter(holds_slot=True).values_list("status", flat=True)
    lines.append(f"  proxies in use: {busy}; sessions holding slots: {dict(Counter(holding))}")
    return "\n".join(lines)


def legal_history(statuses: list[tuple[str, str]]) -> bool:
    current = ""
    for src, dst in statuses:
        if current == "":
            if dst != MissionStatus.QUEUED:
                return False
        elif src != current or not states.can_transition(src, dst):
            return False
        current = dst
    return True


def test_chaos_loses_nothing_and_duplicates_nothing(
    make_fake_worker, fake_writer: FakeWriter, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(SEED)
    worker: FakeWorker = make_fake_worker(max_sessions=64, item_latency=0.01)
    for key, value in {
        "session_tick_s": 0.3,
        "worker_tick_s": 0.3,
        "mission_tick_s": 0.3,
        "lease_s": 5,
        "session_stuck_after_s": 8,
        "proxy_cooldown_s": 1,
        "retry_backoff_base_s": 0.5,
        "http_max_attempts": 2,
        "http_read_timeout_s": 2.0,
        "http_deadline_s": 4.0,
        "circuit_open_s": 2,
        # The health policies stay on, with short time boxes: injected session faults
        # (and sessions stuck on a loaded machine) do pause sites and block proxies,
        # and with the defaults (15 and 30 min) a run would then just wait.
        "site_breaker_cooldown_s": 3,
        "proxy_health_block_s": 5,
    }.items():
        config.set_value(key, value)
    factories.WorkerFactory(base_url=worker.base_url, api_key=worker.api_key, max_sessions=64)
    factories.WriterFactory(
        base_url=fake_writer.base_url, api_key=fake_writer.api_key, is_default=True
    )
    for i in range(50):
        factories.ProxyFactory(external_id=f"px-{i}", type="datacenter")
    factories.SiteConfigFactory(
        domain="*", proxy_types=["datacenter"], items_per_job=5, max_sessions=2
    )
    ids = []
    for m in range(MISSIONS):
        urls = [f"https://shop{m % 11}.example/p/{m}/{i}" for i in range(8)]
        if m % 5 == 0:
            urls.append(f"https://shop{m % 11}.example/status/404/{m}")
        ids.append(actions.create_mission(name=f"Caos {m}", urls=urls).pk)

    logs = tmp_path
    procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(n: int) -> None:
        procs[n] = spawn(
            "run_orchestrator",
            "--name",
            f"chaos-{n}-{time.monotonic_ns()}",
            log=logs / f"orch-{n}.log",
        )

    for n in range(ORCHESTRATORS):
        start(n)
    qcluster = spawn("qcluster", log=logs / "qcluster.log")
    faults: Counter[str] = Counter()
    deadline = time.monotonic() + CHAOS_SECONDS
    round_ = 0
    try:
        while time.monotonic() < deadline:
            if not Mission.objects.filter(pk__in=ids).exclude(status__in=states.TERMINAL).exists():
                break
            time.sleep(rng.uniform(0.5, 1.5))
            n = rng.randrange(ORCHESTRATORS)
            # The first rounds make sure every process fault happens at least once.
            forced = ["kill", "stop_cont", "term"]
            action = (
                forced[round_]
                if round_ < len(forced)
                else rng.choice(
                    [
                        "kill",
                        "stop_cont",
                        "term",
                        "worker_5xx",
                        "writer_after_store",
                        "worker_hang",
                        "fail_session",
                        "drop_session",
                        "none",
                    ]
                )
            )
            round_ += 1
            faults[action] += 1
            proc = procs[n]
            if action == "kill":
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                start(n)
            elif action == "stop_cont":
                proc.send_signal(signal.SIGSTOP)
                time.sleep(rng.uniform(1, 7))  # past the lease, sometimes
                proc.send_signal(signal.SIGCONT)
            elif action == "term":
                stop(proc, timeout=30)
                start(n)
            elif action == "worker_5xx":
                worker.fail_next_requests(rng.randint(1, 4), status=rng.choice([500, 503, 429]))
            elif action == "writer_after_store":
                fake_writer.fail_after_store_next(1)
            elif action == "worker_hang":
                worker.hang_next(1, 3)
            elif action in ("fail_session", "drop_session"):
                active = worker.active_sessions()
                if active:
                    victim = rng.choice(active)
                    if action == "fail_session":
                        worker.fail_session(victim.id, "proxy_connect_failed")
                    else:
                        worker.drop_session(victim.id)
        worker.clear_faults()
        fake_writer.clear_faults()
        for n in range(ORCHESTRATORS):
            if procs[n].poll() is not None:
                start(n)
        try:
            wait_for(
                lambda: (
                    not Mission.objects.filter(pk__in=ids)
                    .exclude(status__in=states.TERMINAL)
                    .exists()
                ),
                240,
                "every mission terminal",
                poll=0.5,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{stuck_report(ids)}") from None
        wait_for(
            lambda: not BrowserSession.objects.filter(holds_slot=True).exists(),
            60,
            "every session closed",
            poll=0.5,
        )
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                stop(proc, timeout=30)
        stop(qcluster, timeout=30)

    check_outcome(ids, fake_writer, faults)


def check_outcome(ids: list[int], fake_writer: FakeWriter, faults: Counter[str]) -> None:
    """The checker: every mission ended legally, nothing lost, nothing duplicated."""
    max_attempts = 1 + int(config.get("max_retries"))
    final = Counter(Mission.objects.filter(pk__in=ids).values_list("status", flat=True))
    assert set(final) <= {MissionStatus.FINALIZADO, MissionStatus.ERRO}, final
    for mission in Mission.objects.filter(pk__in=ids):
        history = list(
            MissionEvent.objects.filter(mission=mission, kind="transition")
            .order_by("id")
            .values_list("from_status", "to_status")
        )
        assert legal_history(history), (mission.pk, history)
        assert mission.attempt <= max_attempts
        done = set(
            str(i)
            for i in MissionItem.objects.filter(
                mission=mission, status=ItemStatus.DONE
            ).values_list("id", flat=True)
        )
        stored = set(fake_writer.item_ids(mission.pk))
        assert stored == done, (mission.pk, len(stored), len(done))
        assert mission.done_items == len(done)
        if mission.status == MissionStatus.FINALIZADO:
            assert fake_writer.completed[mission.pk]["total_records"] == len(done)
    assert len(fake_writer.records) == sum(len(fake_writer.item_ids(m)) for m in ids)
    for w in Worker.objects.all():
        assert w.active_sessions == 0
    assert set(Proxy.objects.values_list("active_sessions", flat=True)) == {0}
    print(
        f"\nCHAOS seed={SEED} missions={MISSIONS} faults={dict(faults)} final={dict(final)} "
        f"records={len(fake_writer.records)} duplicate_deliveries="
        f"{fake_writer.duplicate_records_received} sessions={BrowserSession.objects.count()}"
    )
