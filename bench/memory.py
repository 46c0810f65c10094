"""Memory: peak RSS of `run_orchestrator` running a big mission, and of an export.

    python -m bench.memory [--quick]

1. `run_orchestrator` (a real process, NOTIFY on, fake worker and writer) runs a
   mission of 1,000 URLs to the end, then, in a fresh process, one of 100,000 URLs
   (10,000 in quick mode) for at most `budget` seconds; psutil samples its RSS every
   0.1 s. Target: the peak grows by less than 50 MB from the small to the big mission.
2. Streaming the JSON Lines export (`localnode.export.jsonl_lines`) of a mission with
   100,000 and then 1,000,000 local records (10k/100k quick), each in a fresh process
   that reports its peak RSS. Target: the same peak (within 10 MB) for 10x the records.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench.common import (
    BENCH_DATABASE_URL,
    ROOT,
    Row,
    django_env,
    libpq_dsn,
    main,
    migrate,
    result,
    setup_django,
)

MB = 1024 * 1024


def orchestrator_peak(urls: int, budget_s: float) -> tuple[float, int]:
    """Peak RSS (MB) of run_orchestrator on one mission of `urls` URLs, and the items
    it finished within `budget_s`."""
    import psutil

    from bench.fleet import fakes, setup_fleet, spawn_orchestrator, stop
    from orchestrator import actions
    from orchestrator.models import Mission

    with fakes() as (worker, writer):
        setup_fleet(worker, writer, items_per_job=500, site_max_sessions=8, tick_s=0.5)
        mission = actions.create_mission(
            name=f"memory {urls}",
            urls=[f"https://shop.example.com/p/{i}?ref=bench" for i in range(urls)],
        )
        proc = spawn_orchestrator("--name", f"bench-memory-{urls}")
        peak = 0
        try:
            ps = psutil.Process(proc.pid)
            deadline = time.monotonic() + budget_s
            while time.monotonic() < deadline:
                peak = max(peak, ps.memory_info().rss)
                if Mission.objects.filter(pk=mission.pk, status="FINALIZADO").exists():
                    break
                time.sleep(0.1)
        finally:
            stop(proc)
        done = Mission.objects.get(pk=mission.pk).done_items
    return peak / MB, done


def fill_records(mission_id: int, n: int) -> None:
    import psycopg

    from bench.common import fill_sql

    with psycopg.connect(libpq_dsn(BENCH_DATABASE_URL), autocommit=True) as conn:
        key = f"bench-{mission_id}"
        conn.execute(
            "DELETE FROM localnode_localrecord WHERE mission_id = %s OR batch_id IN"
            " (SELECT id FROM localnode_localbatch WHERE batch_key LIKE 'bench-%%')",
            [mission_id],
        )
        conn.execute("DELETE FROM localnode_localbatch WHERE batch_key LIKE 'bench-%%'")
        batch = conn.execute(
            fill_sql(
                "localnode_localbatch",
                {"batch_key": f"'{key}'", "mission_id": str(mission_id)},
                "1",
                conn,
            )
            + " RETURNING id"
        ).fetchone()
        assert batch is not None
        conn.execute(
            fill_sql(
                "localnode_localrecord",
                {
                    "mission_id": str(mission_id),
                    "item_id": "g::text",
                    "batch_id": str(batch[0]),
                    "url": "'https://shop.example.com/p/' || g",
                    "fetched_at": "now()",
                    "http_status": "200",
                    "data": """jsonb_build_object('title', 'Produto ' || g,
                        'price', (g % 1000) / 10.0, 'text_length', g % 5000)""",
                    "created_at": "now()",
                },
                str(n),
                conn,
            )
        )
        conn.execute("ANALYZE localnode_localrecord")


def export_child(mission_id: int) -> None:
    """In a fresh process: stream the export to nowhere, print records and peak RSS."""
    import resource

    setup_django(BENCH_DATABASE_URL)
    from django.db import transaction

    from localnode.export import jsonl_lines, local_records

    lines = 0
    with transaction.atomic():  # a named (server-side) cursor needs a transaction
        for _ in jsonl_lines(local_records(mission_id)):
            lines += 1
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"lines": lines, "peak_mb": peak_kb / 1024}))


def export_peak(mission_id: int, n: int) -> float:
    fill_records(mission_id, n)
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--export-child", str(mission_id)],
        cwd=ROOT,
        env={**__import__("os").environ, **django_env(BENCH_DATABASE_URL)},
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["lines"] == n, report
    return float(report["peak_mb"])


def run(quick: bool = False) -> list[Row]:
    migrate(BENCH_DATABASE_URL)
    setup_django(BENCH_DATABASE_URL)
    big = 10_000 if quick else 100_000
    small_peak, small_done = orchestrator_peak(1_000, 120)
    assert small_done == 1_000, f"the 1,000-URL mission finished {small_done} items"
    big_peak, big_done = orchestrator_peak(big, 60 if quick else 180)
    assert big_done > 0, "the big mission made no progress"
    n_small, n_big = (10_000, 100_000) if quick else (100_000, 1_000_000)
    export_small = export_peak(999_001, n_small)
    export_big = export_peak(999_002, n_big)
    return [
        result(
            f"run_orchestrator peak RSS, {big:,} URLs",
            big_peak,
            "MB",
            baseline=small_peak,
            target="< +50 MB vs 1,000 URLs",
            passed=big_peak - small_peak < 50,
            note=f"+{big_peak - small_peak:.1f} MB; {big_done:,} items done in the budget,"
            f" {small_done:,} of 1,000",
        ),
        result(
            f"export peak RSS, {n_big:,} records",
            export_big,
            "MB",
            baseline=export_small,
            target="< +10 MB vs 10x fewer",
            passed=export_big - export_small < 10,
            note=f"+{export_big - export_small:.1f} MB; JSON Lines, server-side cursor",
        ),
    ]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--export-child":
        export_child(int(sys.argv[2]))
        sys.exit(0)
    sys.exit(main(run, __doc__))
