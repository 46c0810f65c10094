"""Pipeline throughput: missions through the whole lifecycle, one orchestrator.

    python -m bench.pipeline [--quick]

Missions of 50 URLs are created up front; one `Orchestrator` (what `run_orchestrator`
runs, here in this process so its queries and CPU can be counted) drives them from
QUEUED to FINALIZADO against the zero-latency fake worker and writer (subprocesses,
loopback HTTP) on PostgreSQL with NOTIFY wake-ups. Figures: missions/s, items/s,
database queries per mission, orchestrator CPU ms per mission, all counted up to the
moment the last mission is FINALIZADO (the orchestrator's shutdown is not). Runs with
missions of 500 URLs and, as their baseline, as many missions of 50 URLs check that queries per
mission do not grow with the URLs (the same mission count on both sides: the
orchestrator batches per tick, so its queries per mission also shrink as more missions
share a tick, which says nothing about URLs).

Baseline, same run and database: pgqueuer draining as many no-op jobs as the pipeline
delivers items, with one and with four consumer processes, the clock stopped when the
last job has run (`bench.baselines`); the pipeline is compared with the faster of them.
"""

from __future__ import annotations

import resource
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from bench.common import BENCH_DATABASE_URL, Row, main, migrate, result, setup_django


@dataclass
class PipelineRun:
    missions: int
    urls: int
    wall_s: float
    cpu_s: float
    queries: int
    fakes_cpu_s: float = 0.0  # the fake worker's and writer's processes, same interval

    @property
    def missions_per_s(self) -> float:
        return self.missions / self.wall_s

    @property
    def items_per_s(self) -> float:
        return self.missions * self.urls / self.wall_s

    @property
    def queries_per_mission(self) -> float:
        return self.queries / self.missions

    @property
    def cpu_ms_per_mission(self) -> float:
        return self.cpu_s * 1000 / self.missions

    @property
    def fakes_share(self) -> float:
        """The fakes' share of the CPU the run used (fakes and orchestrator)."""
        total = self.cpu_s + self.fakes_cpu_s
        return self.fakes_cpu_s / total if total else 0.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_pipeline(n_missions: int, urls: int, *, timeout_s: float = 600) -> PipelineRun:
    from django.db import connection
    from django.db.backends.signals import connection_created

    from bench.fleet import fakes, setup_fleet
    from orchestrator import actions
    from orchestrator.models import Mission
    from orchestrator.runner import Orchestrator
    from orchestrator.states import MissionStatus

    with fakes() as (worker, writer):
        setup_fleet(worker, writer, items_per_job=max(50, urls), site_max_sessions=1)
        for m in range(n_missions):
            actions.create_mission(
                name=f"bench {m}",
                urls=[f"https://shop{m % 40}.example.com/p/{m}/{i}" for i in range(urls)],
            )
        orch = Orchestrator(name="bench-pipeline")
        done = threading.Event()
        finished: dict[str, float] = {}

        def watch() -> None:
            # Its own connection (Django's are per thread): not counted below. The clock
            # stops when the last mission is FINALIZADO, not when the orchestrator has
            # shut down (the baselines' clock stops at their last job too).
            # One raw statement, no ORM: the watcher shares the process (and its GIL)
            # with the orchestrator it measures, so it must cost next to nothing.
            left_sql = f"SELECT EXISTS (SELECT 1 FROM {Mission._meta.db_table} WHERE status <> %s)"
            try:
                with connection.cursor() as cursor:
                    while not orch.stopping.is_set():
                        cursor.execute(left_sql, [MissionStatus.FINALIZADO])
                        if not cursor.fetchone()[0]:
                            finished.update(
                                wall=time.perf_counter(),
                                cpu=_cpu(),
                                queries=queries,
                                fakes_cpu=worker.cpu_s() + writer.cpu_s(),
                            )
                            done.set()
                            orch.stop()
                            return
                        time.sleep(0.02)
            finally:
                connection.close()

        queries = 0
        queries_lock = threading.Lock()

        def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            nonlocal queries
            with queries_lock:
                queries += 1
            return execute(sql, params, many, context)

        def counted(sender: Any, connection: Any, **kwargs: Any) -> None:
            # Every connection the orchestrator's threads open (one per manager and
            # the main thread's), not the watcher's.
            if threading.current_thread() is not watcher:
                connection.execute_wrappers.append(count)

        watcher = threading.Thread(target=watch, daemon=True)
        connection.close()  # reopened (and counted) by the orchestrator's main thread
        connection_created.connect(counted)
        fakes0 = worker.cpu_s() + writer.cpu_s()
        cpu0, t0 = _cpu(), time.perf_counter()
        watcher.start()
        try:
            orch.run(max_seconds=timeout_s)
        finally:
            connection_created.disconnect(counted)
        watcher.join(5)
        assert done.is_set(), f"pipeline did not finish {n_missions} missions in {timeout_s}s"
        wall, cpu = finished["wall"] - t0, finished["cpu"] - cpu0
        fakes_cpu = finished["fakes_cpu"] - fakes0
        delivered = sum(Mission.objects.values_list("done_items", flat=True))
        assert delivered == n_missions * urls, f"{delivered} of {n_missions * urls} items done"
    return PipelineRun(n_missions, urls, wall, cpu, int(finished["queries"]), fakes_cpu)


CONSUMERS = (1, 4)  # pgqueuer consumer processes for the baseline


def run(quick: bool = False) -> list[Row]:
    from bench.baselines import pgqueuer_drain, pgqueuer_method

    migrate(BENCH_DATABASE_URL)
    setup_django(BENCH_DATABASE_URL)
    n = 20 if quick else 200
    timeout_s = 120 if quick else 600
    small = run_pipeline(n, 50, timeout_s=timeout_s)
    # The baseline right after the figure it anchors (on a shared machine the load
    # moves within minutes; the 500-URL runs come after both).
    jobs = small.missions * small.urls
    drains = {k: pgqueuer_drain(jobs, consumers=k) for k in CONSUMERS}
    large = run_pipeline(max(4, n // 10), 500, timeout_s=timeout_s)
    same_count = run_pipeline(large.missions, 50, timeout_s=timeout_s)
    best_k = max(drains, key=lambda k: drains[k])
    drain = drains[best_k]
    growth = large.queries_per_mission / same_count.queries_per_mission
    return [
        *(
            result(
                f"pgqueuer drain, {k} consumer(s): jobs/s",
                rate,
                "jobs/s",
                note="method: " + pgqueuer_method(jobs, k),
            )
            for k, rate in drains.items()
        ),
        result(
            f"pipeline {n}x50 URLs: items/s",
            small.items_per_s,
            "items/s",
            baseline=drain,
            target=">= 1.0x pgqueuer drain (goal 2x)",
            passed=small.items_per_s >= drain,
            note=f"baseline: the faster pgqueuer drain above ({pgqueuer_method(jobs, best_k)})",
        ),
        result(f"pipeline {n}x50 URLs: missions/s", small.missions_per_s, "missions/s"),
        result("pipeline: DB queries per mission (50 URLs)", small.queries_per_mission, "queries"),
        result(
            f"pipeline: DB queries per mission (50 URLs, {same_count.missions} missions)",
            same_count.queries_per_mission,
            "queries",
        ),
        result(
            f"pipeline: DB queries per mission (500 URLs, {large.missions} missions)",
            large.queries_per_mission,
            "queries",
            baseline=same_count.queries_per_mission,
            ratio=growth,
            target="<= 1.5x the 50-URL figure",
            passed=growth <= 1.5,
            note="baseline: as many missions of 50 URLs",
        ),
        result(
            "pipeline: orchestrator CPU per mission (50 URLs)",
            small.cpu_ms_per_mission,
            "ms",
        ),
        result(
            "pipeline: orchestrator CPU per mission (500 URLs)",
            large.cpu_ms_per_mission,
            "ms",
        ),
        result(
            "pipeline: fake worker+writer CPU per mission (50 URLs)",
            small.fakes_cpu_s * 1000 / small.missions,
            "ms",
            note=f"{small.fakes_share:.0%} of the run's CPU (fakes + orchestrator); "
            f"wall {small.wall_s:.1f} s, orchestrator CPU {small.cpu_s:.1f} s, "
            f"fakes CPU {small.fakes_cpu_s:.1f} s",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
