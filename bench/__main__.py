"""Run the benchmark suite and print one table; write it as JSON.

    python -m bench [--quick] [--only claims,pipeline,...] [--json PATH]

Each measurement is its own script (`python -m bench.<name>`), run here in its own
process so that one's memory, connections and Django setup never colour another's. Every
script runs its baseline in the same process and minute, so the ratios hold on a busy
machine even when absolute figures move. A script that crashes shows as FAIL with its
error; the exit status is 0 unless a script crashed (benchmarks are not tests: CI runs
`--quick` to keep the suite working and asserts nothing about time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from bench.common import RESULTS_DIR, ROOT, Row, format_row

SCRIPTS = ("claims", "distributor", "pipeline", "latency", "scale", "memory")


def run_script(name: str, quick: bool) -> tuple[list[Row], str]:
    if name == "distributor":  # written before the suite: called, not spawned
        from bench import distributor

        started = time.perf_counter()
        rows = distributor.run(quick=quick)
        for row in rows:
            row.setdefault("unit", "s CPU")
        return rows, f"{time.perf_counter() - started:.0f}s"
    command = [sys.executable, "-m", f"bench.{name}", *(["--quick"] if quick else [])]
    started = time.perf_counter()
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=os.environ)
    took = f"{time.perf_counter() - started:.0f}s"
    if out.returncode != 0:
        error = (out.stderr.strip().splitlines() or ["?"])[-1][:200]
        return [
            {
                "name": f"{name}: crashed",
                "unit": "",
                "value": "",
                "baseline": None,
                "ratio": None,
                "target": "runs",
                "passed": False,
                "note": error,
            }
        ], took
    return json.loads(out.stdout.strip().splitlines()[-1]), took


def markdown(rows: list[Row]) -> str:
    """The table as docs/performance.md shows it."""
    lines = [
        "| figure | value | baseline | ratio | target | result | notes |",
        "| --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for row in rows:
        ratio = "" if row.get("ratio") is None else f"{row['ratio']}x"
        baseline = "" if row.get("baseline") is None else row["baseline"]
        verdict = {True: "pass", False: "**FAIL**", None: "-"}[row.get("passed")]
        lines.append(
            f"| {row['name']} | {row['value']} {row.get('unit', '')} | {baseline} | {ratio} "
            f"| {row.get('target', '')} | {verdict} | {row.get('note', '')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(SCRIPTS))
    parser.add_argument("--json", default=str(RESULTS_DIR / "latest.json"), type=Path)
    args = parser.parse_args(argv)
    chosen = [s for s in args.only.split(",") if s] or list(SCRIPTS)
    unknown = set(chosen) - set(SCRIPTS)
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    header = (
        f"{'figure':<52} {'value':>10} {'unit':<10} {'baseline':>10} {'ratio':>8}  "
        f"{'target':<22} result"
    )
    print(header)
    print("-" * len(header))
    rows: list[Row] = []
    crashed = False
    for name in chosen:
        script_rows, took = run_script(name, args.quick)
        crashed |= any(str(r["name"]).endswith(": crashed") for r in script_rows)
        for row in script_rows:
            row["script"] = name
            print(format_row(row), flush=True)
        print(f"  ({name}: {took})", flush=True)
        rows.extend(script_rows)
    judged = [r for r in rows if r.get("passed") is not None]
    passed = sum(1 for r in judged if r["passed"])
    print(f"\n{passed}/{len(judged)} targets met")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "quick": args.quick,
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load": os.getloadavg(),
                },
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    args.json.with_suffix(".md").write_text(markdown(rows))
    print(f"written to {args.json} and {args.json.with_suffix('.md')}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
