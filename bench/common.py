"""Shared plumbing of the benchmark scripts: the databases they own, Django setup, bulk
rows made in SQL, result rows and the command line every script shares.

Each script measures its baseline in the same process and minute and returns rows of
`{name, unit, value, baseline, ratio, target, passed}`; `python -m bench` runs them all
and prints one table. The benchmarks use their own databases (`mc_bench`,
`mc_bench_scale`), never the application's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BENCH_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mc_bench"
)
BENCH_SCALE_DATABASE_URL = os.environ.get(
    "BENCH_SCALE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mc_bench_scale"
)
# Benchmarks are not the place for a real secret; every process of one run shares it so
# that secrets written by one (worker API keys) decrypt in the others.
BENCH_SECRET_KEY = "bench-only-not-a-secret-0123456789-abcdefghijklmnopqrstuvwxyz"

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
Row = dict[str, Any]


def django_env(database_url: str) -> dict[str, str]:
    """The environment of a Django process (this one or a child) of the benchmarks."""
    return {
        "DATABASE_URL": database_url,
        "SECRET_KEY": BENCH_SECRET_KEY,
        "DEBUG": "0",
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "LOCALNODE_ENABLED": "0",
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        # Production static storage (manifest) needs collectstatic: keep ours apart.
        "STATIC_ROOT": str(RESULTS_DIR / "static"),
    }


def setup_django(database_url: str) -> None:
    """Point this process at `database_url` and set Django up (once, before any import
    of models)."""
    for key, value in django_env(database_url).items():
        os.environ[key] = value
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mission_control.settings")
    import django

    django.setup()
    _add_missing_columns()


def _add_missing_columns() -> None:
    """Add tables and columns whose model has no migration yet (a tree in development), so
    the benchmarks run against the models as they are. Benchmark databases only; when
    the migration lands, `migrate()` finds the column present and starts afresh."""
    from django.apps import apps
    from django.db import connection

    name = str(connection.settings_dict["NAME"])
    if not name.startswith("mc_bench"):
        return
    tables = set(connection.introspection.table_names())
    with connection.schema_editor() as editor:
        for model in apps.get_models():
            table = model._meta.db_table
            if model._meta.proxy or not model._meta.managed:
                continue
            if table not in tables:
                editor.create_model(model)
                tables.add(table)
                continue
            with connection.cursor() as cursor:
                have = {
                    c.name for c in connection.introspection.get_table_description(cursor, table)
                }
            for field in model._meta.local_concrete_fields:
                if field.column not in have:
                    editor.add_field(model, field)


def libpq_dsn(database_url: str) -> str:
    """`postgres://` URL as psycopg takes it."""
    parts = urlsplit(database_url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))


def ensure_database(database_url: str) -> None:
    """Create the benchmark database if missing (only ever the one named)."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(("postgresql", parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(database_url: str) -> None:
    """Drop a benchmark database (refuses any name not starting with `mc_bench`)."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    assert name.startswith("mc_bench"), f"not a benchmark database: {name}"
    admin = urlunsplit(("postgresql", parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def migrate(database_url: str) -> None:
    """Bring the benchmark database to the tree's migrations; when they cannot apply
    (a migration edited in place during development), start it afresh."""
    import subprocess

    ensure_database(database_url)
    env = {**os.environ, **django_env(database_url)}
    command = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
    if subprocess.run(command, env=env, capture_output=True, cwd=ROOT).returncode != 0:
        drop_database(database_url)
        ensure_database(database_url)
        subprocess.run(command, env=env, check=True, cwd=ROOT)


def collectstatic(database_url: str) -> None:
    import subprocess

    env = {**os.environ, **django_env(database_url)}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        env=env,
        check=True,
        cwd=ROOT,
    )


# ----------------------------------------------------------------------------- rows


def result(
    name: str,
    value: float,
    unit: str,
    *,
    baseline: float | None = None,
    ratio: float | None = None,
    target: str = "",
    passed: bool | None = None,
    note: str = "",
) -> Row:
    """One line of the table. `ratio` defaults to value / baseline (higher is better);
    `passed` is None for figures reported without a target."""
    if ratio is None and baseline:
        ratio = value / baseline
    return {
        "name": name,
        "unit": unit,
        "value": _round(value),
        "baseline": None if baseline is None else _round(baseline),
        "ratio": None if ratio is None else round(ratio, 2),
        "target": target,
        "passed": passed,
        "note": note,
    }


def _round(x: float) -> float:
    if x == 0 or abs(x) >= 100:
        return round(x, 1)
    if abs(x) >= 1:
        return round(x, 2)
    return round(x, 4)


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(p) - 1]


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


# ----------------------------------------------------------------------------- bulk SQL


def fill_sql(table: str, columns: dict[str, str], n_sql: str, conn: Any) -> str:
    """`INSERT INTO table (...) SELECT ... FROM generate_series(1, n) AS g` setting
    `columns` (SQL expressions over `g`) and a neutral value for every other NOT NULL
    column without a database default, so the benchmarks keep working when a column is
    added."""
    rows = conn.execute(
        """SELECT column_name, data_type FROM information_schema.columns
           WHERE table_name = %s AND is_nullable = 'NO' AND column_default IS NULL
             AND is_identity = 'NO'""",
        [table],
    ).fetchall()
    neutral = {
        "text": "''",
        "character varying": "''",
        "integer": "0",
        "bigint": "0",
        "smallint": "0",
        "boolean": "false",
        "jsonb": "'{}'::jsonb",
        "timestamp with time zone": "now()",
        "double precision": "0",
        "numeric": "0",
        "uuid": "gen_random_uuid()",
        "date": "current_date",
    }
    values = dict(columns)
    for name, kind in rows:
        if name == "id" or name in values:
            continue
        values[name] = neutral.get(kind, "DEFAULT")
    names = ", ".join(f'"{c}"' for c in values)
    exprs = ", ".join(values.values())
    return f'INSERT INTO "{table}" ({names}) SELECT {exprs} FROM generate_series(1, {n_sql}) AS g'


# ----------------------------------------------------------------------------- CLI


def main(run: Callable[[bool], list[Row]], doc: str | None, argv: list[str] | None = None) -> int:
    """The command line of every script: `--quick`, print the rows, JSON last."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI keeps it working)")
    args = parser.parse_args(argv)
    rows = run(args.quick)
    for row in rows:
        print(format_row(row), file=sys.stderr)
    print(json.dumps(rows))
    return 0


def format_row(row: Row) -> str:
    baseline = "" if row.get("baseline") is None else row["baseline"]
    ratio = "" if row.get("ratio") is None else f"{row['ratio']}x"
    passed = {True: "pass", False: "FAIL", None: "-"}[row.get("passed")]
    return (
        f"{row['name']:<52} {row['value']!s:>10} {row.get('unit', ''):<10} "
        f"{baseline!s:>10} {ratio:>8}  {row.get('target', '')!s:<22} {passed}"
    )
