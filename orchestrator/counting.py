"""Counts for hot read paths (status API, dashboard) that stay cheap at millions of rows.

A COUNT(*) over a big table reads every row it counts. Here each count reads at most
`cap + 1` index entries: below the cap it is exact, above it the number comes from
PostgreSQL's statistics (the planner's own estimate) and is flagged approximate. An
operator needs "about 800 thousand finished" to the nearest percent, not to the row.
SQLite (tests, development) keeps exact COUNTs: its tables stay small.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Count, Field, Model

# Exact below this many rows; above, an estimate. 10,000 entries of a status index read
# in about a millisecond.
COUNT_CAP = 10_000
# For values that only ever grow (ended missions), where nobody needs the exact number
# once there are thousands: read ten times fewer entries.
ENDED_COUNT_CAP = 1_000


@dataclass(frozen=True)
class Counts:
    """Rows per value of a column; `approximate` holds the values whose count is an
    estimate (there were more than the cap)."""

    counts: dict[str, int]
    approximate: frozenset[str] = frozenset()

    def total(self, keys: Sequence[str]) -> int:
        return sum(self.counts.get(k, 0) for k in keys)

    def any_approximate(self, keys: Sequence[str]) -> bool:
        return any(k in self.approximate for k in keys)


def round_estimate(n: float) -> int:
    """An estimate shown with three significant digits (812,345 -> 812,000), so it does
    not pretend to be exact."""
    if n < 1000:
        return round(n)
    scale = 10 ** (int(math.log10(n)) - 2)
    return round(n / scale) * scale


def counts_by(
    model: type[Model],
    column: str,
    values: Sequence[str],
    cap: int | None = None,
    caps: Mapping[str, int] | None = None,
) -> Counts:
    """Rows of `model` per value of `column` (one query; two when some value passes its
    cap). Each value's count is served by an index whose first column is `column`.
    `caps` sets the cap of some values; the others get `cap`, which defaults to
    COUNT_CAP, read at call time so that tests can lower it."""
    cap = COUNT_CAP if cap is None else cap
    limits = {value: (caps or {}).get(value, cap) for value in values}
    if connection.vendor != "postgresql":
        rows = model._default_manager.values_list(column).annotate(n=Count("pk")).order_by()
        counts = dict.fromkeys(values, 0)
        counts.update({str(value): n for value, n in rows})
        return Counts(counts)
    table = connection.ops.quote_name(model._meta.db_table)
    col = connection.ops.quote_name(_column(model, column))
    # One capped subquery per value: `LIMIT cap + 1` bounds the index entries read.
    sql = (
        f"SELECT v.value, (SELECT count(*) FROM (SELECT 1 FROM {table} t"
        f" WHERE t.{col} = v.value LIMIT v.cap + 1) c)"
        " FROM unnest(%s::text[], %s::int[]) AS v(value, cap)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(limits), list(limits.values())])
        counts = {value: n for value, n in cursor.fetchall()}
    over = [value for value, n in counts.items() if n > limits[value]]
    if not over:
        return Counts(counts)
    estimates = estimate_by(model, column, over)
    for value in over:
        counts[value] = max(round_estimate(estimates.get(value, 0)), limits[value] + 1)
    return Counts(counts, frozenset(over))


def estimate_by(model: type[Model], column: str, values: Sequence[str]) -> dict[str, float]:
    """PostgreSQL's estimate of the rows with `column = value`, the way the planner makes
    it: the table's row count (reltuples scaled to its current size) times the value's
    frequency in pg_stats (most common values, else an even share of the rest). Empty
    when the table was never analyzed."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT CASE WHEN c.relpages > 0
                        THEN c.reltuples / c.relpages
                             * (pg_relation_size(c.oid) / current_setting('block_size')::int)
                        ELSE c.reltuples END,
                   s.null_frac, s.n_distinct,
                   s.most_common_vals::text::text[], s.most_common_freqs
            FROM pg_class c
            LEFT JOIN pg_stats s ON s.schemaname = current_schema()
                 AND s.tablename = c.relname AND s.attname = %s
            WHERE c.oid = %s::regclass
            """,
            [_column(model, column), model._meta.db_table],
        )
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0 or row[2] is None:
        return {}
    return _planner_estimates(row, values)


def _column(model: type[Model], name: str) -> str:
    field = model._meta.get_field(name)
    if not isinstance(field, Field) or not field.column:
        raise ValueError(f"{model.__name__}.{name} is not a concrete column")
    return field.column


def _planner_estimates(row: Any, values: Sequence[str]) -> dict[str, float]:
    rows, null_frac, n_distinct, mcv, mcf = row
    freqs = dict(zip(mcv or [], mcf or [], strict=True))
    distinct = n_distinct if n_distinct >= 0 else -n_distinct * rows
    rest = max(0.0, 1.0 - (null_frac or 0.0) - sum(freqs.values()))
    other = rest / max(1.0, distinct - len(freqs))
    return {value: rows * freqs.get(value, other) for value in values}
