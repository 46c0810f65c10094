"""Baselines run in the same process and minute as the figures they anchor.

- `pgqueuer_drain(n, consumers=k)`: `n` no-op jobs enqueued in the benchmark database,
  then drained by `k` pgqueuer `QueueManager`s (one process and connection each, in
  drain mode). The clock starts when every consumer is connected and released at once
  and stops when the last job's entrypoint has run, not when `QueueManager.run`
  returns: that return includes pgqueuer's idle linger after the queue is empty, which
  is shutdown, not throughput. Jobs per second.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from typing import Any

from bench.common import BENCH_DATABASE_URL, libpq_dsn

METHOD = (
    "pgqueuer {version} drain of {n} no-op jobs, {k} consumer process(es), "
    "clock stops at the last job run; the faster of a drain before and one after the engine runs"
)


async def _prepare(dsn: str, n: int) -> None:
    import psycopg
    from pgqueuer import PsycopgDriver, Queries

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        exists = await (await conn.execute("SELECT to_regclass('pgqueuer') IS NOT NULL")).fetchone()
        queries = Queries(PsycopgDriver(conn))
        if not (exists and exists[0]):
            await queries.install()
        await conn.execute("TRUNCATE pgqueuer, pgqueuer_log")
        for start in range(0, n, 1000):
            size = min(1000, n - start)
            await queries.enqueue(["noop"] * size, [None] * size, [0] * size)


async def _consume(dsn: str, batch_size: int, ready: Any, go: Any, out: Any) -> None:
    import psycopg
    from pgqueuer import PsycopgDriver, Queries, QueueManager
    from pgqueuer.domain.types import QueueExecutionMode
    from pgqueuer.models import Job

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        qm = QueueManager(Queries(PsycopgDriver(conn)))
        ran = [0, 0.0]

        @qm.entrypoint("noop")
        async def noop(job: Job) -> None:
            ran[0] += 1
            ran[1] = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes

        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, go.wait)
        await qm.run(batch_size=batch_size, mode=QueueExecutionMode.drain)
        out.put((ran[0], ran[1]))


def _consumer_main(dsn: str, batch_size: int, ready: Any, go: Any, out: Any) -> None:
    asyncio.run(_consume(dsn, batch_size, ready, go, out))


def pgqueuer_drain(
    n: int,
    *,
    consumers: int = 1,
    batch_size: int = 10,
    database_url: str = BENCH_DATABASE_URL,
) -> float:
    """No-op jobs per second drained by `consumers` pgqueuer processes, clock stopped at
    the last job run."""
    dsn = libpq_dsn(database_url)
    asyncio.run(_prepare(dsn, n))
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    readies = [ctx.Event() for _ in range(consumers)]
    procs = [
        ctx.Process(target=_consumer_main, args=(dsn, batch_size, r, go, out), daemon=True)
        for r in readies
    ]
    for proc in procs:
        proc.start()
    for ready in readies:
        assert ready.wait(300), "a pgqueuer consumer did not start"  # slow on a busy machine
    started = time.perf_counter()
    go.set()
    reports = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(60)
    ran = sum(count for count, _ in reports)
    assert ran == n, f"pgqueuer ran {ran} of {n} jobs"
    last = max(at for count, at in reports if count)
    return n / (last - started)


def pgqueuer_method(n: int, consumers: int) -> str:
    from importlib.metadata import version

    return METHOD.format(version=version("pgqueuer"), n=n, k=consumers)


if __name__ == "__main__":
    for k in (1, 4):
        print(f"pgqueuer x{k}: {pgqueuer_drain(10_000, consumers=k):.0f} no-op jobs/s")
