"""API and dashboard at scale: latency and query counts with 1M missions, 10M events.

    python -m bench.scale [--quick]        # quick: 10k missions, 100k events

The data is generated in bulk SQL (generate_series) in its own database
(`mc_bench_scale`) and kept between runs of the same size (table `bench_meta`).
Requests go through Django's test client in this process (server time: URL routing,
middleware, view, serialization, template, database), as a superuser, repeated after a
warm-up; figures are p50/p95 and the queries per request. Queries that COUNT over the
big tables are counted too (target: none); a capped count, over a subquery with a
LIMIT, reads a bounded number of rows and is not one. Baseline: the list's own main SELECT sent
raw through psycopg, same run.
"""

from __future__ import annotations

import base64
import re
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from bench.common import (
    BENCH_SCALE_DATABASE_URL,
    Row,
    collectstatic,
    fill_sql,
    libpq_dsn,
    main,
    migrate,
    percentile,
    result,
    setup_django,
)

STATUSES = ("FINALIZADO", "ERRO", "CANCELADO", "QUEUED", "EXTRAINDO", "ATRIBUIDO", "ARMAZENANDO")
# Bump when `generate` changes what it writes: a kept data set of another version is
# rebuilt.
GENERATION = 2
BIG_COUNT = re.compile(
    r'COUNT\(.*FROM "orchestrator_(mission|missionevent|missionitem)"', re.IGNORECASE | re.DOTALL
)
# A LIMIT by a number or by a column of the outer query (`LIMIT v.cap + 1`, the
# per-value caps of orchestrator.counting); `LIMIT ALL` is no bound.
BOUNDED = re.compile(r"\bLIMIT\s+(?!ALL\b)(\d+|\w+\.\w+)", re.IGNORECASE)


def generate(database_url: str, n_missions: int, n_events: int) -> None:
    """(Re)build the data set unless one of this size is already there."""
    import psycopg

    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (missions bigint, events bigint)")
        conn.execute("ALTER TABLE bench_meta ADD COLUMN IF NOT EXISTS version int DEFAULT 1")
        have = conn.execute("SELECT missions, events, version FROM bench_meta").fetchone()
        if have == (n_missions, n_events, GENERATION):
            return
        started = time.perf_counter()
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND "
                "(tablename LIKE 'orchestrator\\_%' OR tablename LIKE 'registry\\_%')"
            )
        ]
        conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
        conn.execute("DELETE FROM bench_meta")
        status = (
            "(ARRAY['"
            + "','".join(STATUSES)
            + "'])[1 + (CASE WHEN g % 100 < 80 THEN 0 WHEN g % 100 < 90 THEN 1"
            " WHEN g % 100 < 95 THEN 2 ELSE 3 + g % 4 END)]"
        )
        created = f"now() - ({n_missions} - g) * interval '1 second'"
        conn.execute(
            fill_sql(
                "orchestrator_mission",
                {
                    "name": "'mission ' || g",
                    "domain": "'shop' || (g % 500) || '.example.com'",
                    "status": status,
                    "priority": "(g % 3)",
                    "attempt": "1",
                    "total_items": "50",
                    "done_items": "CASE WHEN g % 100 < 80 THEN 50 ELSE g % 50 END",
                    "failed_items": "0",
                    "error_code": "CASE WHEN g % 100 BETWEEN 80 AND 89 THEN 'SCRAPE_BLOCKED'"
                    " ELSE '' END",
                    "created_at": created,
                    "updated_at": created,
                    # One mission a second, each run within the second it was made.
                    "finalizado_at": f"CASE WHEN g % 100 < 80 THEN {created} END",
                },
                str(n_missions),
                conn,
            )
        )
        first = conn.execute("SELECT min(id) FROM orchestrator_mission").fetchone()
        per = max(1, n_events // n_missions)
        conn.execute(
            fill_sql(
                "orchestrator_missionevent",
                {
                    "mission_id": f"{first[0] if first else 1} + (g - 1) / {per}",
                    "created_at": f"now() - ({n_events} - g) * interval '100 milliseconds'",
                    "kind": "(ARRAY['transition','session','job','item','writer'])[1 + g % 5]",
                    # A mission's events span its second: the 5th is QUEUED ->
                    # ATRIBUIDO, the 10th (last) the move to where it is now.
                    "from_status": f"CASE WHEN g % {per} = 0 THEN 'ARMAZENANDO'"
                    f" WHEN g % 5 = 0 THEN 'QUEUED' ELSE '' END",
                    "to_status": f"CASE WHEN g % {per} = 0 THEN"
                    f" {status.replace('g %', f'((g - 1) / {per} + 1) %')}"
                    f" WHEN g % 5 = 0 THEN 'ATRIBUIDO' ELSE '' END",
                    "attempt": "1",
                    "error_code": "CASE WHEN g % 97 = 0 THEN 'SESSION_FAILED' ELSE '' END",
                    "message": "'event ' || g",
                    "actor": "''",
                    "data": "'{}'::jsonb",
                },
                str(n_events),
                conn,
            )
        )
        conn.execute("VACUUM ANALYZE")
        conn.execute(
            "INSERT INTO bench_meta (missions, events, version) VALUES (%s, %s, %s)",
            [n_missions, n_events, GENERATION],
        )
        print(f"generated in {time.perf_counter() - started:.0f}s", file=sys.stderr)


def deep_cursor(next_url: str, position: int) -> str:
    """The `next` link with its position moved near the end of the table."""
    query = parse_qs(urlsplit(next_url).query)
    raw = query["cursor"][0]
    decoded = parse_qs(base64.b64decode(raw + "=" * (-len(raw) % 4)).decode())
    decoded["p"] = [str(position)]
    cursor = base64.b64encode(urlencode(decoded, doseq=True).encode()).decode()
    return "/api/missions/?" + urlencode({"cursor": cursor})


def timed(get: Callable[[], Any], repeats: int) -> tuple[list[float], int, int, list[str]]:
    """Latencies (s), queries per request, big COUNTs per request, the SQL of one."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    get()  # warm-up: caches, plans
    with CaptureQueriesContext(connection) as ctx:
        response = get()
    assert response.status_code == 200, response.status_code
    sqls = [q["sql"] for q in ctx.captured_queries]
    counts = sum(1 for s in sqls if BIG_COUNT.search(s) and not BOUNDED.search(s))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        get()
        times.append(time.perf_counter() - start)
    return times, len(sqls), counts, sqls


def run(quick: bool = False) -> list[Row]:
    import psycopg

    # Quick mode has its own database: the full data set takes minutes to rebuild.
    database_url = BENCH_SCALE_DATABASE_URL + ("_quick" if quick else "")
    migrate(database_url)
    collectstatic(database_url)
    setup_django(database_url)
    from django.contrib.auth import get_user_model
    from django.test import Client

    n_missions, n_events = (10_000, 100_000) if quick else (1_000_000, 10_000_000)
    generate(database_url, n_missions, n_events)
    repeats = 10 if quick else 40
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_superuser": True, "is_staff": True}
    )
    client = Client()
    client.force_login(user)
    # As a web process does once Django is set up (mission_control/wsgi.py).
    from mission_control import startup

    startup.freeze_startup_objects()

    from orchestrator.models import Mission

    first_id = Mission.objects.order_by("id").values_list("id", flat=True).first()
    last_id = Mission.objects.order_by("-id").values_list("id", flat=True).first()
    assert first_id and last_id
    mid_id = (first_id + last_id) // 2
    first_page = client.get("/api/missions/")
    next_url = first_page.json().get("next")
    deep = deep_cursor(next_url, first_id + 1_000) if next_url else "/api/missions/"
    requests: list[tuple[str, str, float]] = [
        ("API missions list, first page", "/api/missions/", 0.050),
        ("API missions list, deep cursor page", deep, 0.050),
        ("API missions list, status=ERRO", "/api/missions/?status=ERRO", 0.050),
        (
            "API missions list, status+domain",
            "/api/missions/?status=FINALIZADO&domain=shop7.example.com",
            0.050,
        ),
        ("API mission detail", f"/api/missions/{mid_id}/", 0.050),
        ("API mission events", f"/api/missions/{mid_id}/events/", 0.050),
        ("API orchestrator status", "/api/execution/orchestrator-status", 0.050),
        ("dashboard overview", "/", 0.200),
        ("dashboard missions page", "/missoes/", 0.200),
    ]
    rows: list[Row] = []
    list_sql = ""
    list_p50 = 0.0
    for label, url, target in requests:
        times, queries, counts, sqls = timed(partial(client.get, url), repeats)
        if label.endswith("first page"):
            list_sql = max(sqls, key=len)
            list_p50 = percentile(times, 50)
        p95 = percentile(times, 95)
        rows.append(
            result(
                f"{label} p95",
                p95 * 1000,
                "ms",
                target=f"<= {target * 1000:.0f} ms",
                passed=p95 <= target and counts == 0,
                note=f"p50 {percentile(times, 50) * 1000:.1f} ms, {queries} queries,"
                f" {counts} big COUNTs",
            )
        )
    # Baseline: the list's main SELECT, raw through psycopg.
    with psycopg.connect(libpq_dsn(database_url)) as conn:
        conn.execute(list_sql).fetchall()
        raw = []
        for _ in range(repeats):
            start = time.perf_counter()
            conn.execute(list_sql).fetchall()
            raw.append(time.perf_counter() - start)
    raw_p50 = percentile(raw, 50)
    rows.insert(
        1,
        result(
            "API missions list, first page p50 vs raw SELECT",
            list_p50 * 1000,
            "ms",
            baseline=raw_p50 * 1000,
            ratio=raw_p50 / list_p50,
            note="baseline: its main SELECT raw through psycopg; ratio = raw / API",
        ),
    )
    return rows


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
