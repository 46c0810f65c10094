"""Pipeline throughput: missions through the whole lifecycle.

    python -m bench.pipeline [--quick]

Missions of 50 URLs are created up front and driven from QUEUED to FINALIZADO against
the zero-latency fake worker and writer (subprocesses, loopback HTTP) on PostgreSQL with
NOTIFY wake-ups, the clock stopped when the last mission is FINALIZADO:

- `run_engine`: by `run_orchestrator --processes N`, as deployed, for every split (the
  throughput figures and the engine's CPU per mission);
- `run_pipeline`: by one `Orchestrator` in this process, every statement counted
  (queries and CPU per mission). Runs with missions of 500 URLs and, as their baseline,
  as many missions of 50 URLs check that queries per mission do not grow with the URLs
  (the same mission count on both sides: the orchestrator batches per tick, so its
  queries per mission also shrink as more missions share a tick, which says nothing
  about URLs).

Baseline, same run and database: pgqueuer draining as many no-op jobs as the pipeline
delivers items, with one and with four consumer processes, before and after the engine
runs, the clock stopped when the last job has run (`bench.baselines`); the fastest
engine is compared with the faster drain.
"""

from __future__ import annotations

import resource
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.common import BENCH_DATABASE_URL, Row, main, migrate, result, setup_django

if TYPE_CHECKING:
    from bench.fleet import Fake


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


def _prepare(worker: Fake, writer: Fake, n_missions: int, urls: int) -> None:
    """The fleet and `n_missions` QUEUED missions of `urls` URLs over 40 domains."""
    from bench.fleet import setup_fleet
    from orchestrator import actions

    setup_fleet(worker, writer, items_per_job=max(50, urls), site_max_sessions=1)
    for m in range(n_missions):
        actions.create_mission(
            name=f"bench {m}",
            urls=[f"https://shop{m % 40}.example.com/p/{m}/{i}" for i in range(urls)],
        )


def _all_finalized(cursor: Any) -> bool:
    """One raw statement, no ORM: a watcher that shares a process with what it
    measures must cost next to nothing."""
    from orchestrator.models import Mission
    from orchestrator.states import MissionStatus

    cursor.execute(
        f"SELECT NOT EXISTS (SELECT 1 FROM {Mission._meta.db_table} WHERE status <> %s)",
        [MissionStatus.FINALIZADO],
    )
    return bool(cursor.fetchone()[0])


def _assert_delivered(n_missions: int, urls: int) -> None:
    from orchestrator.models import Mission

    delivered = sum(Mission.objects.values_list("done_items", flat=True))
    assert delivered == n_missions * urls, f"{delivered} of {n_missions * urls} items done"


def run_pipeline(n_missions: int, urls: int, *, timeout_s: float = 600) -> PipelineRun:
    from django.db import connection
    from django.db.backends.signals import connection_created

    from bench.fleet import fakes
    from orchestrator.runner import Orchestrator

    with fakes() as (worker, writer):
        _prepare(worker, writer, n_missions, urls)
        orch = Orchestrator(name="bench-pipeline")
        done = threading.Event()
        finished: dict[str, float] = {}

        def watch() -> None:
            # Its own connection (Django's are per thread): not counted below. The clock
            # stops when the last mission is FINALIZADO, not when the orchestrator has
            # shut down (the baselines' clock stops at their last job too).
            try:
                with connection.cursor() as cursor:
                    while not orch.stopping.is_set():
                        if _all_finalized(cursor):
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
        _assert_delivered(n_missions, urls)
    return PipelineRun(n_missions, urls, wall, cpu, int(finished["queries"]), fakes_cpu)


def run_engine(
    n_missions: int, urls: int, *, processes: int, timeout_s: float = 600
) -> PipelineRun:
    """The same missions driven by `run_orchestrator --processes N`, the deployed engine,
    as a process of its own (nothing of the benchmark shares its CPU or counts its
    statements). It starts paused; the clock starts when the missions are released to
    the running engine and stops when the last one is FINALIZADO. CPU is the engine's
    processes' over the same interval; queries are not counted here (`run_pipeline`)."""
    from django.db import connection

    from bench.fleet import child_pids, fakes, proc_cpu_s, spawn_orchestrator, stop
    from orchestrator import actions
    from orchestrator.models import OrchestratorInstance
    from orchestrator.processes import partition
    from orchestrator.runner import MANAGER_CLASSES

    groups = len(partition(list(MANAGER_CLASSES), processes))
    with fakes() as (worker, writer):
        _prepare(worker, writer, n_missions, urls)
        actions.set_paused(True)
        engine = spawn_orchestrator("--processes", str(processes))
        try:
            deadline = time.monotonic() + timeout_s
            while OrchestratorInstance.objects.filter(stopped_at__isnull=True).count() < groups:
                assert time.monotonic() < deadline and engine.poll() is None, "engine did not start"
                time.sleep(0.1)
            time.sleep(1)  # its listeners up: the release below wakes every manager
            pids = [engine.pid, *child_pids(engine.pid)]

            def cpu() -> float:
                return sum(proc_cpu_s(pid) for pid in pids)

            cpu0, fakes0 = cpu(), worker.cpu_s() + writer.cpu_s()
            t0 = time.perf_counter()
            actions.set_paused(False)
            with connection.cursor() as cursor:
                while not _all_finalized(cursor):
                    assert time.monotonic() < deadline, f"engine did not finish {n_missions}"
                    time.sleep(0.02)
            wall = time.perf_counter() - t0
            used, fakes_used = cpu() - cpu0, worker.cpu_s() + writer.cpu_s() - fakes0
        finally:
            stop(engine)
        _assert_delivered(n_missions, urls)
    return PipelineRun(n_missions, urls, wall, used, 0, fakes_used)


def http_round_trip_cpu_us(calls: int = 500) -> dict[str, float]:
    """CPU (user + system, this process) of one GET to the fake worker on loopback,
    keep-alive, by the engine's path to a plain-http service (`clients.http1`) and by a
    plain `httpx.Client`: the floor under each of the contract calls a mission makes
    (open, job, results, batch, complete, close), before any of our code."""
    import os

    import httpx

    from bench.fleet import WORKER_KEY, fakes
    from orchestrator.clients import http1

    auth = {"Authorization": f"Bearer {WORKER_KEY}"}
    timeout = httpx.Timeout(15.0, connect=3.0)
    with fakes() as (worker, _writer), httpx.Client(headers=auth) as client:
        url = worker.base_url.rstrip("/") + "/api/v1/health"
        pool = http1.pool_for(url)
        assert pool is not None

        def by_http1() -> None:
            with pool.stream(
                "GET", url, content=None, params={}, headers=auth, timeout=timeout
            ) as resp:
                b"".join(resp.iter_bytes())

        def by_httpx() -> None:
            client.get(url)

        used = {}
        for name, call in (("http1", by_http1), ("httpx", by_httpx)):
            call()
            before = os.times()
            for _ in range(calls):
                call()
            after = os.times()
            used[name] = (after.user - before.user) + (after.system - before.system)
    return {name: cpu * 1e6 / calls for name, cpu in used.items()}


CONSUMERS = (1, 4)  # pgqueuer consumer processes for the baseline
# open session, start job, read results, write batch, complete mission, close session
CALLS_PER_MISSION = 6
# run_orchestrator --processes: every split there is (the target
# row takes the faster engine, as the baseline takes the faster drain).
ENGINE_PROCESSES = (1, 2, 3, 4)  # 4: one manager per process, the finest split


def run(quick: bool = False) -> list[Row]:
    from bench.baselines import pgqueuer_drain, pgqueuer_method

    migrate(BENCH_DATABASE_URL)
    setup_django(BENCH_DATABASE_URL)
    n = 20 if quick else 200
    timeout_s = 120 if quick else 600
    # The baseline drains just before and just after the engine runs it anchors, each
    # at its faster (on a shared machine the load moves within minutes; the
    # instrumented in-process runs come after all of them).
    jobs = n * 50
    before = {k: pgqueuer_drain(jobs, consumers=k) for k in CONSUMERS}
    engines = {p: run_engine(n, 50, processes=p, timeout_s=timeout_s) for p in ENGINE_PROCESSES}
    drains = {k: max(rate, pgqueuer_drain(jobs, consumers=k)) for k, rate in before.items()}
    small = run_pipeline(n, 50, timeout_s=timeout_s)
    http_us = http_round_trip_cpu_us(100 if quick else 500)
    large = run_pipeline(max(4, n // 10), 500, timeout_s=timeout_s)
    same_count = run_pipeline(large.missions, 50, timeout_s=timeout_s)
    best_k = max(drains, key=lambda k: drains[k])
    drain = drains[best_k]
    best = _fastest(engines)
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
        *_engine_rows(n, engines, best, drain, pgqueuer_method(jobs, best_k)),
        result(f"pipeline {n}x50 URLs: missions/s", engines[best].missions_per_s, "missions/s"),
        result(
            f"pipeline {n}x50 URLs in-process (statements counted): items/s",
            small.items_per_s,
            "items/s",
            note="one Orchestrator in the benchmark's process, every statement counted",
        ),
        *_query_rows(small, large, same_count),
        *_cpu_rows(engines, small, large),
        result(
            "HTTP round trip on loopback, the engine's path (http.client): CPU per call",
            http_us["http1"],
            "us",
            note=f"a mission makes {CALLS_PER_MISSION} contract calls: "
            f"{CALLS_PER_MISSION * http_us['http1'] / 1000:.1f} ms of client CPU per mission "
            "at least",
        ),
        result(
            "HTTP round trip on loopback, plain httpx: CPU per call",
            http_us["httpx"],
            "us",
            note="for comparison: httpx carries https, proxied and injected clients' calls",
        ),
    ]


def _fastest(engines: dict[int, PipelineRun]) -> int:
    return max(engines, key=lambda p: engines[p].items_per_s)


def _engine_rows(
    n: int, engines: dict[int, PipelineRun], best: int, drain: float, method: str
) -> list[Row]:
    """items/s of each `run_orchestrator --processes N` against the faster drain; the
    target is on the fastest engine, `best` (as the baseline is the faster drain)."""
    return [
        result(
            f"pipeline {n}x50 URLs, run_orchestrator --processes {p}: items/s",
            engine.items_per_s,
            "items/s",
            baseline=drain,
            target=">= 1.0x pgqueuer drain (goal 2x)" if p == best else "",
            passed=engine.items_per_s >= drain if p == best else None,
            note=f"baseline: the faster pgqueuer drain above ({method})",
        )
        for p, engine in sorted(engines.items(), reverse=True)
    ]


def _query_rows(small: PipelineRun, large: PipelineRun, same_count: PipelineRun) -> list[Row]:
    growth = large.queries_per_mission / same_count.queries_per_mission
    return [
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
    ]


def _cpu_rows(engines: dict[int, PipelineRun], small: PipelineRun, large: PipelineRun) -> list[Row]:
    rows = [
        result(
            f"pipeline: engine CPU per mission (50 URLs, --processes {p})",
            engine.cpu_ms_per_mission,
            "ms",
            note=f"wall {engine.wall_s:.1f} s, engine CPU {engine.cpu_s:.1f} s, "
            f"fakes CPU {engine.fakes_cpu_s:.1f} s",
        )
        for p, engine in sorted(engines.items(), reverse=True)
    ]
    return [
        *rows,
        result(
            "pipeline: orchestrator CPU per mission (50 URLs, in-process)",
            small.cpu_ms_per_mission,
            "ms",
        ),
        result(
            "pipeline: orchestrator CPU per mission (500 URLs, in-process)",
            large.cpu_ms_per_mission,
            "ms",
        ),
        result(
            "pipeline: fake worker+writer CPU per mission (50 URLs)",
            small.fakes_cpu_s * 1000 / small.missions,
            "ms",
            note=f"{small.fakes_share:.0%} of the in-process run's CPU (fakes + orchestrator)",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
