"""A fleet for the end-to-end benchmarks: the fake worker and writer from `tests/fakes`
as subprocesses on loopback (zero latency, HTTP/1.1 keep-alive), registered in the benchmark database with
proxies, a `*` site config and fast manager intervals. Django must be set up."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER_KEY = "bench-worker-key"
WRITER_KEY = "bench-writer-key"


@dataclass
class Fake:
    proc: subprocess.Popen[str]
    base_url: str

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid)


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far (Linux /proc; 0.0
    where it is not readable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime: fields 14 and 15 of stat(5), 12 and 13 after the command.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The direct children of process `pid` (Linux /proc; none where not readable)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def start_fake(kind: str, key: str, *extra: str) -> Fake:
    proc = subprocess.Popen(
        [
            sys.executable,
            *("-m", "tests.fakes", kind, "--port", "0", "--key", key, "--keep-alive", *extra),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ},
    )
    assert proc.stdout is not None
    base_url = proc.stdout.readline().strip()
    assert base_url.startswith("http"), f"fake {kind} did not start"
    return Fake(proc, base_url)


def spawn_orchestrator(*args: str) -> subprocess.Popen[bytes]:
    """`manage.py run_orchestrator` against the benchmark database."""
    from bench.common import BENCH_DATABASE_URL, django_env

    return subprocess.Popen(
        [sys.executable, "manage.py", "run_orchestrator", *args],
        cwd=ROOT,
        env={**os.environ, **django_env(BENCH_DATABASE_URL)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


@contextmanager
def fakes(worker_slots: int = 256) -> Iterator[tuple[Fake, Fake]]:
    worker = start_fake("worker", WORKER_KEY, "--max-sessions", str(worker_slots))
    writer = start_fake("writer", WRITER_KEY, "--max-batch-records", "1000")
    try:
        yield worker, writer
    finally:
        for fake in (worker, writer):
            fake.proc.terminate()
            fake.proc.wait(10)


def reset_tables() -> None:
    """Empty every orchestrator and registry table (the benchmark database only)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND "
            "(tablename LIKE 'orchestrator\\_%%' OR tablename LIKE 'registry\\_%%')"
        )
        tables = [r[0] for r in cursor.fetchall()]
        cursor.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")


def setup_fleet(
    worker: Fake,
    writer: Fake,
    *,
    worker_slots: int = 256,
    proxies: int = 64,
    items_per_job: int = 50,
    site_max_sessions: int = 1,
    tick_s: float | None = 0.5,
    extra_config: dict[str, object] | None = None,
) -> None:
    from registry import config
    from registry.models import Proxy, SiteConfig, Worker, Writer

    reset_tables()
    values: dict[str, object] = dict(extra_config or {})
    if tick_s is not None:
        values.update(session_tick_s=tick_s, worker_tick_s=tick_s, mission_tick_s=tick_s)
    for key, value in values.items():
        config.set_value(key, value)
    Worker.objects.create(
        name="bench-worker",
        base_url=worker.base_url,
        api_key=WORKER_KEY,
        providers=["local"],
        max_sessions=worker_slots,
        health_status="ok",
    )
    Writer.objects.create(
        name="bench-writer",
        base_url=writer.base_url,
        api_key=WRITER_KEY,
        health_status="ok",
        is_default=True,
        max_batch_records=1000,
    )
    Proxy.objects.bulk_create(
        Proxy(
            external_id=f"px-{i}",
            type="datacenter",
            host=f"203.0.113.{i % 250 + 1}",
            port=8000 + i,
            country="BR",
            max_sessions=worker_slots,
        )
        for i in range(proxies)
    )
    SiteConfig.objects.update_or_create(
        domain="*",
        defaults={
            "proxy_types": ["datacenter"],
            "max_sessions": site_max_sessions,
            "items_per_job": items_per_job,
        },
    )
