"""Claims: `leases.claim()` against raw psycopg SKIP LOCKED claims on the same table.

    python -m bench.claims [--quick]

Each round fills `orchestrator_mission` with fresh QUEUED rows (generate_series), then
1, 2 or 4 processes drain them with one claimer, one row (`limit=1`) or 50 rows per
claim: the project's `leases.claim()`, the ORM claim it replaced (kept here for the
before/after record), and raw psycopg statements (`UPDATE ... WHERE id = (SELECT ...
FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING` and its `WITH ... MATERIALIZED ... LIMIT 50`
batch form). Every claimed id is collected and checked: none claimed twice, none missed.

A last figure runs `allocation.claim_due_missions` — missions, worker slots and proxies
allocated in one transaction — to show what a full allocation costs per mission.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from typing import Any

from bench.common import (
    BENCH_DATABASE_URL,
    Row,
    fill_sql,
    libpq_dsn,
    main,
    migrate,
    result,
    setup_django,
)

LEASE_S = 300
BATCH = 50

RAW_SINGLE = """
UPDATE orchestrator_mission SET locked_by = %s,
       locked_until = statement_timestamp() + make_interval(secs => %s),
       lease_token = lease_token + 1
 WHERE id = (SELECT id FROM orchestrator_mission
              WHERE status = 'QUEUED'
                AND (locked_until IS NULL OR locked_until < statement_timestamp())
              ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id, lease_token
"""
RAW_BATCH = """
WITH c AS MATERIALIZED (
    SELECT id FROM orchestrator_mission
     WHERE status = 'QUEUED'
       AND (locked_until IS NULL OR locked_until < statement_timestamp())
     ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
UPDATE orchestrator_mission AS t SET locked_by = %s,
       locked_until = statement_timestamp() + make_interval(secs => %s),
       lease_token = t.lease_token + 1
  FROM c WHERE t.id = c.id
RETURNING t.id, t.lease_token
"""


def reset_missions(n: int) -> None:
    import psycopg

    with psycopg.connect(libpq_dsn(BENCH_DATABASE_URL), autocommit=True) as conn:
        conn.execute("TRUNCATE orchestrator_mission CASCADE")
        conn.execute(
            fill_sql(
                "orchestrator_mission",
                {
                    "name": "'bench ' || g",
                    "domain": "'shop' || (g % 40) || '.example.com'",
                    "status": "'QUEUED'",
                    "attempt": "1",
                },
                str(n),
                conn,
            )
        )
        conn.execute("VACUUM ANALYZE orchestrator_mission")


def orm_claim_before(limit: int, owner: str) -> list[tuple[int, int]]:
    """`leases.claim()` as it was before its PostgreSQL fast path: four round trips."""
    from django.db import transaction
    from django.db.models import F, Q

    from orchestrator.leases import lease_expiry, lease_free
    from orchestrator.models import Mission

    with transaction.atomic():
        ids = list(
            Mission.objects.filter(Q(status="QUEUED"))
            .filter(lease_free())
            .order_by("id")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return []
        Mission.objects.filter(id__in=ids).update(
            locked_by=owner, locked_until=lease_expiry(LEASE_S), lease_token=F("lease_token") + 1
        )
        return list(Mission.objects.filter(id__in=ids).values_list("id", "lease_token"))


def _claimer(kind: str, limit: int, owner: str, ready: Any, go: Any, out: Any) -> None:
    """One process: claim until nothing is left; report ids and the time span."""
    setup_django(BENCH_DATABASE_URL)
    from django.db import connection
    from django.db.models import Q

    from orchestrator import leases
    from orchestrator.models import Mission

    claim: Any
    if kind == "raw":
        import psycopg

        conn = psycopg.connect(libpq_dsn(BENCH_DATABASE_URL), autocommit=True)

        def claim() -> list[tuple[int, int]]:
            if limit == 1:
                return conn.execute(RAW_SINGLE, [owner, LEASE_S]).fetchall()
            return conn.execute(RAW_BATCH, [limit, owner, LEASE_S]).fetchall()

    elif kind == "project":

        def claim() -> list[tuple[int, int]]:
            claimed = leases.claim(
                Mission, Q(status="QUEUED"), owner=owner, lease_s=LEASE_S, limit=limit
            )
            return [(lease.id, lease.token) for lease in claimed]

    else:

        def claim() -> list[tuple[int, int]]:
            return orm_claim_before(limit, owner)

    connection.ensure_connection()
    ready.put(owner)
    go.wait()
    started = time.perf_counter_ns()
    ids: list[int] = []
    while True:
        rows = claim()
        if not rows:
            break
        ids.extend(r[0] for r in rows)
    finished = time.perf_counter_ns()
    out.put((owner, ids, started, finished))


def drain(kind: str, limit: int, processes: int, n: int) -> float:
    """Rows per second for `processes` claimers draining `n` fresh rows."""
    reset_missions(n)
    ctx = mp.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_claimer, args=(kind, limit, f"{kind}-{i}", ready, go, out))
        for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=60)
    go.set()
    reports = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(30)
    claimed = [i for _, ids, _, _ in reports for i in ids]
    assert len(claimed) == len(set(claimed)), f"{kind}: a row was claimed twice"
    assert len(claimed) == n, f"{kind}: {len(claimed)} of {n} rows claimed"
    span_ns = max(r[3] for r in reports) - min(r[2] for r in reports)
    return n / (span_ns / 1e9)


def full_allocation(n: int) -> tuple[float, int]:
    """Missions per second through `claim_due_missions` (one process): each mission
    gets one session, a worker slot and a proxy. Returns (missions/s, queries/mission)."""
    import psycopg
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from orchestrator import allocation
    from orchestrator.models import BrowserSession
    from registry import config
    from registry.models import Proxy, SiteConfig, Worker, Writer

    with psycopg.connect(libpq_dsn(BENCH_DATABASE_URL), autocommit=True) as conn:
        # CASCADE empties the missions too (writer FK): fill them afterwards.
        conn.execute("TRUNCATE registry_proxy, registry_worker, registry_writer CASCADE")
        conn.execute("DELETE FROM registry_siteconfig")
    reset_missions(n)
    with psycopg.connect(libpq_dsn(BENCH_DATABASE_URL), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO orchestrator_missionitem (mission_id, url, status, attempts, job_key,"
            " error_code, error_message, failed_proxies)"
            " SELECT id, 'https://shop.example.com/p/' || id, 'pending', 0, '', '', '',"
            " '[]'::jsonb FROM orchestrator_mission"
        )
    Worker.objects.create(name="w", base_url="http://127.0.0.1:9", max_sessions=n * 2)
    Writer.objects.create(name="wr", base_url="http://127.0.0.1:9", is_default=True)
    Proxy.objects.bulk_create(
        Proxy(external_id=f"px-{i}", type="datacenter", host="10.0.0.1", port=1000 + i)
        for i in range(200)
    )
    Proxy.objects.update(max_sessions=n)
    SiteConfig.objects.update_or_create(
        domain="*", defaults={"proxy_types": ["datacenter"], "max_sessions": 1}
    )
    cfg = config.load()
    done = 0
    start = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        while True:
            outcomes = allocation.claim_due_missions("bench", timezone.now(), cfg)
            if not outcomes:
                break
            done += sum(1 for _, a in outcomes if a.sessions)
    elapsed = time.perf_counter() - start
    assert done == n, f"{done} of {n} missions allocated"
    assert BrowserSession.objects.count() == n
    assert Worker.objects.get().active_sessions == n
    return n / elapsed, round(len(queries) / n)


def run(quick: bool = False) -> list[Row]:
    migrate(BENCH_DATABASE_URL)
    setup_django(BENCH_DATABASE_URL)
    n_single = 300 if quick else 3_000
    n_batch = 3_000 if quick else 30_000
    rounds = 1 if quick else 2
    rows: list[Row] = []
    for processes in (1, 4) if quick else (1, 2, 4):
        for limit, n, label, target in (
            (1, n_single, "single", 0.6),
            (BATCH, n_batch, "batch50", 0.7),
        ):
            best: dict[str, float] = {}
            for _ in range(rounds):  # interleaved, best of rounds: the machine is shared
                for kind in ("raw", "project", "orm_before"):
                    rate = drain(kind, limit, processes, n)
                    best[kind] = max(best.get(kind, 0.0), rate)
            rows.append(
                result(
                    f"claims {label} x{processes}p: leases.claim",
                    best["project"],
                    "rows/s",
                    baseline=best["raw"],
                    target=f">= {target}x raw",
                    passed=best["project"] / best["raw"] >= target,
                )
            )
            rows.append(
                result(
                    f"claims {label} x{processes}p: ORM claim (before)",
                    best["orm_before"],
                    "rows/s",
                    baseline=best["raw"],
                    note="the claim() before its one-statement path",
                )
            )
            print(f"claims {label} x{processes}p done: {best}", file=sys.stderr)
    rate, per_mission = full_allocation(300 if quick else 3_000)
    rows.append(
        result(
            "claim_due_missions: mission+slot+proxy, 1p",
            rate,
            "missions/s",
            note=f"{per_mission} queries per mission",
        )
    )
    return rows


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
