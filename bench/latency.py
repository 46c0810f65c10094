"""Reaction latency: from a mission's creation to its first job starting, idle system.

    python -m bench.latency [--quick]

`run_orchestrator` runs as a real process with the default manager intervals
(missions 10 s, sessions 5 s, workers 10 s), once with NOTIFY wake-ups and once with
`--no-notify` (polling only, the baseline). Missions of 5 URLs are created one at a
time at random moments, each after the previous one's first job started; the latency
is `job_started_at` of its first session minus the mission's `created_at` (both stamped
on this machine's clock). Fake worker and writer answer at once.
"""

from __future__ import annotations

import random
import sys
import time

from bench.common import BENCH_DATABASE_URL, Row, main, migrate, percentile, result, setup_django


def measure(samples: int, *, notify: bool, timeout_s: float = 60) -> list[float]:
    from django.db.models import Min

    from bench.fleet import fakes, setup_fleet, spawn_orchestrator, stop
    from orchestrator import actions
    from orchestrator.models import BrowserSession, OrchestratorInstance

    rng = random.Random(11)
    latencies: list[float] = []
    with fakes() as (worker, writer):
        setup_fleet(worker, writer, tick_s=None, items_per_job=5)
        name = f"bench-latency-{'notify' if notify else 'poll'}"
        proc = spawn_orchestrator("--name", name, *(() if notify else ("--no-notify",)))
        try:
            deadline = time.monotonic() + 60
            while not OrchestratorInstance.objects.filter(name=name).exists():
                assert time.monotonic() < deadline, "run_orchestrator did not start"
                time.sleep(0.1)
            time.sleep(1.0)  # its first ticks ran: the system is idle
            for n in range(samples):
                time.sleep(rng.uniform(0.2, 2.0))
                mission = actions.create_mission(
                    name=f"latency {n}",
                    urls=[f"https://shop.example.com/{n}/{i}" for i in range(5)],
                )
                deadline = time.monotonic() + timeout_s
                while True:
                    started = BrowserSession.objects.filter(mission=mission).aggregate(
                        t=Min("job_started_at")
                    )["t"]
                    if started is not None:
                        break
                    assert time.monotonic() < deadline, f"no job started in {timeout_s}s"
                    time.sleep(0.01)
                latencies.append((started - mission.created_at).total_seconds())
        finally:
            stop(proc)
    return latencies


def run(quick: bool = False) -> list[Row]:
    migrate(BENCH_DATABASE_URL)
    setup_django(BENCH_DATABASE_URL)
    notify = measure(5 if quick else 20, notify=True)
    polling = measure(3 if quick else 10, notify=False)
    rows = []
    for p in (50, 95):
        ours, base = percentile(notify, p), percentile(polling, p)
        rows.append(
            result(
                f"reaction latency p{p}: NOTIFY",
                ours,
                "s",
                baseline=base,
                ratio=base / ours if ours else None,
                target="<= 0.25 s" if p == 50 else "",
                passed=(ours <= 0.25) if p == 50 else None,
                note="baseline: polling only (--no-notify), default intervals",
            )
        )
    for p in (50, 95):
        rows.append(result(f"reaction latency p{p}: polling only", percentile(polling, p), "s"))
    return rows


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
