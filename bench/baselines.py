"""Baselines run in the same process and minute as the figures they anchor.

- `pgqueuer_drain(n)`: pgqueuer draining `n` no-op jobs from the benchmark database,
  jobs per second (the job-queue throughput a PostgreSQL queue gets on this machine).
"""

from __future__ import annotations

import asyncio
import time

from bench.common import BENCH_DATABASE_URL, libpq_dsn


async def _pgqueuer_drain(dsn: str, n: int, batch_size: int) -> float:
    import psycopg
    from pgqueuer import PsycopgDriver, Queries, QueueManager
    from pgqueuer.domain.types import QueueExecutionMode
    from pgqueuer.models import Job

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        exists = await (await conn.execute("SELECT to_regclass('pgqueuer') IS NOT NULL")).fetchone()
        driver = PsycopgDriver(conn)
        queries = Queries(driver)
        if not (exists and exists[0]):
            await queries.install()
        await conn.execute("TRUNCATE pgqueuer, pgqueuer_log")
        for start in range(0, n, 1000):
            size = min(1000, n - start)
            await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
        qm = QueueManager(queries)

        @qm.entrypoint("noop")
        async def noop(job: Job) -> None:
            return None

        started = time.perf_counter()
        await qm.run(batch_size=batch_size, mode=QueueExecutionMode.drain)
        elapsed = time.perf_counter() - started
        left = await (await conn.execute("SELECT count(*) FROM pgqueuer")).fetchone()
        assert left is not None and left[0] == 0, f"pgqueuer left {left} jobs"
        return n / elapsed


def pgqueuer_drain(
    n: int, *, batch_size: int = 10, database_url: str = BENCH_DATABASE_URL
) -> float:
    """No-op jobs per second drained by one pgqueuer QueueManager."""
    return asyncio.run(_pgqueuer_drain(libpq_dsn(database_url), n, batch_size))


if __name__ == "__main__":
    print(f"pgqueuer: {pgqueuer_drain(5000):.0f} no-op jobs/s")
