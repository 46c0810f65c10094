"""Leases: short, fenced claims on rows (missions, sessions), stamped by the database
clock. Every process that works on a row claims it here, writes through `fenced` or
`release` (compare-and-set on the lease token) and, for a batch, `hold`s the rows it
still owns: locked in id order, the losers logged as STALE_LEASE and left alone.

Rules (docs/engine.md): no database lock is ever held across an HTTP call; claims use
`select_for_update(skip_locked=True)` on PostgreSQL (on SQLite the IMMEDIATE
transaction serializes them); leases expire by the database clock and every write
after an external call is conditional on the lease token.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import connection, models, transaction
from django.db.models import F, Q
from django.db.models.functions import Now

from orchestrator import pgbatch
from orchestrator.models import BrowserSession, Mission

logger = logging.getLogger("orchestrator.allocation")

M = TypeVar("M", bound=models.Model)


@dataclass(frozen=True)
class Lease:
    id: int
    token: int


def lease_expiry(seconds: float) -> Any:
    """`now() + seconds` computed by the database, so every process agrees."""
    return Now() + dt.timedelta(seconds=seconds)


def lease_free() -> Q:
    return Q(locked_until__isnull=True) | Q(locked_until__lt=Now())


def claim(
    model: type[M],
    condition: Q,
    *,
    owner: str,
    lease_s: float,
    limit: int,
    order_by: Sequence[Any] = ("id",),
) -> list[Lease]:
    """Claim up to `limit` rows matching `condition` whose lease is free.

    One short transaction: lock the candidate ids (skipping rows other processes
    hold), stamp a lease with a new token, read the tokens back. Returns the leases.
    """
    manager = model._default_manager
    if connection.vendor == "postgresql":
        return _claim_one_statement(model, condition, order_by, owner, lease_s, limit)
    candidates = manager.filter(condition).filter(lease_free()).order_by(*order_by)
    with transaction.atomic():
        ids = list(
            candidates.select_for_update(skip_locked=True, of=("self",)).values_list(
                "id", flat=True
            )[:limit]
        )
        if not ids:
            return []
        manager.filter(id__in=ids).update(
            locked_by=owner,
            locked_until=lease_expiry(lease_s),
            lease_token=F("lease_token") + 1,
        )
        rows = manager.filter(id__in=ids).values_list("id", "lease_token")
        return [Lease(i, t) for i, t in rows]


def _claim_one_statement(
    model: type[M],
    condition: Q,
    order_by: Sequence[Any],
    owner: str,
    lease_s: float,
    limit: int,
) -> list[Lease]:
    """PostgreSQL: the same claim as one statement, one round trip (docs/engine.md, "Claims,
    measured"; bench/claims.py measures it against raw psycopg).

    The candidate SELECT is the queryset's own SQL; `FOR UPDATE OF <table> SKIP LOCKED` is
    appended by hand because Django refuses to compile `select_for_update()` outside a
    transaction, and a single statement needs none. MATERIALIZED makes the CTE run once,
    so no more than `limit` rows are ever claimed under concurrency (a plain
    `WHERE id IN (SELECT ... LIMIT n)` may be re-evaluated and claim more).

    Building and compiling the queryset cost more than the statement itself for
    one-row claims, so the SQL and its parameters are kept per call shape when the
    condition holds only constants (see `_statement_key`).
    """
    key = _statement_key(model, condition, order_by, limit)
    statement = _CLAIM_STATEMENTS.get(key) if key else None
    if statement is None:
        table = connection.ops.quote_name(model._meta.db_table)
        manager = model._default_manager
        candidates = manager.filter(condition).filter(lease_free()).order_by(*order_by)
        select, select_params = candidates.values_list("id")[:limit].query.sql_with_params()
        statement = (
            f"WITH c AS MATERIALIZED ({select} FOR UPDATE OF {table} SKIP LOCKED) "
            f"UPDATE {table} AS t SET locked_by = %s, "
            "locked_until = STATEMENT_TIMESTAMP() + make_interval(secs => %s), "
            "lease_token = t.lease_token + 1 "
            "FROM c WHERE t.id = c.id RETURNING t.id, t.lease_token",
            tuple(select_params),
        )
        if key:
            if len(_CLAIM_STATEMENTS) >= 256:
                _CLAIM_STATEMENTS.clear()
            _CLAIM_STATEMENTS[key] = statement
    sql, params = statement
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, owner, float(lease_s)])
        rows = cursor.fetchall()
    return [Lease(i, t) for i, t in sorted(rows)]


# (model, condition, ordering, limit) -> (sql, params) of a one-statement claim.
_CLAIM_STATEMENTS: dict[tuple[str, ...], tuple[str, tuple[Any, ...]]] = {}
_CONSTANTS = (str, int, float, bool, type(None))


def _statement_key(
    model: type[models.Model], condition: Q, order_by: Sequence[Any], limit: int
) -> tuple[str, ...] | None:
    """A cache key when `condition` is made only of constants and plain `F()` columns,
    whose repr then determines the SQL and its parameters; None otherwise (dates,
    expressions, querysets: compiled every time)."""

    def constant(value: Any) -> bool:
        if isinstance(value, _CONSTANTS) or type(value) is F:
            return True
        if isinstance(value, list | tuple):
            return all(isinstance(v, _CONSTANTS) for v in value)
        return False

    def plain(node: Any) -> bool:
        if isinstance(node, Q):
            return all(plain(child) for child in node.children)
        return (
            isinstance(node, tuple)
            and len(node) == 2
            and isinstance(node[0], str)
            and constant(node[1])
        )

    if not plain(condition) or not all(isinstance(o, str) for o in order_by):
        return None
    return (model._meta.label, repr(condition), *order_by, str(limit), connection.alias)


def fenced(model: type[M], lease: Lease, owner: str) -> models.QuerySet[M]:
    """The row, only while this process still holds the lease it was given."""
    return model._default_manager.filter(pk=lease.id, lease_token=lease.token, locked_by=owner)


def release(model: type[models.Model], lease: Lease, owner: str, **updates: Any) -> bool:
    """Write `updates` and drop the lease, if still ours. False means a stale lease."""
    won = fenced(model, lease, owner).update(locked_by="", locked_until=None, **updates) == 1
    if not won:
        logger.warning(
            "STALE_LEASE %s %s token=%s: another process owns it now; nothing written",
            model.__name__,
            lease.id,
            lease.token,
            extra={"lease_id": lease.id, "lease_token": lease.token},
        )
    return won


def reap_expired_leases(limit: int = 500) -> int:
    """Clear the marks of leases that expired (their owner died or stalled).

    Claims already treat an expired lease as free; this keeps the tables honest for
    operators. The token is kept, so a stalled owner stays fenced out.
    """
    total = 0
    for model in (Mission, BrowserSession):
        ids = list(
            model.objects.filter(locked_until__lt=Now()).values_list("id", flat=True)[:limit]
        )
        if ids:
            total += model.objects.filter(id__in=ids, locked_until__lt=Now()).update(
                locked_by="", locked_until=None
            )
    return total


def leases_q(
    leases: list[Lease], model: type[BrowserSession] | type[Mission] = BrowserSession
) -> Any:
    """Rows of `leases`, each only with the token it was claimed with (a filter)."""
    return pgbatch.rows_in(model, ["pk", "lease_token"], [(x.id, x.token) for x in leases])


def update_in_id_order(queryset: Any, **updates: Any) -> int:
    """`queryset.update(**updates)` for several rows, locking them in id order first (in
    a transaction), as every batch that writes several sessions or missions does: two
    batches then never wait on each other in a cycle."""
    with transaction.atomic():
        ids = hold(queryset)
        if not ids:
            return 0
        return int(queryset.filter(pk__in=ids).update(**updates))


def release_many(
    model: type[BrowserSession] | type[Mission], leases: list[Lease], owner: str
) -> int:
    """`release` of many leases in one statement (no other updates)."""
    if not leases:
        return 0
    return update_in_id_order(
        model._default_manager.filter(leases_q(leases, model), locked_by=owner),
        locked_by="",
        locked_until=None,
    )


_engine_log = logging.getLogger("orchestrator")


def hold(
    queryset: Any, expected: Iterable[tuple[int, str, int | None]] = (), action: str = ""
) -> set[int]:
    """Lock the rows of `queryset` in id order (in the caller's transaction) and return
    their ids: the caller's filter names what must still hold (lease token, owner,
    status), so the ids are the compare-and-set winners. Each row of `expected`
    (id, label, mission id) that lost is logged as STALE_LEASE: `action` not recorded."""
    held = set(queryset.order_by("id").select_for_update(of=("self",)).values_list("id", flat=True))
    for pk, label, mission_id in expected:
        if pk not in held:
            stale(label, action, mission_id)
    return held


def stale(label: str, action: str, mission_id: int | None = None) -> None:
    """Log a write refused because another process owns the row now."""
    _engine_log.warning(
        "STALE_LEASE %s: %s not recorded", label, action, extra={"mission_id": mission_id}
    )


def reclaim_orphaned(now: dt.datetime, stale_after_s: float) -> int:
    """Free the leases held by orchestrator instances that are gone (stopped, or no
    heartbeat for `stale_after_s`), so a killed holder's sessions and missions are
    collected again at once rather than when their leases run out (issue #15 case 2).
    The token bump fences the holder should it wake up. Charged to no one: only the
    lease columns change. Returns how many rows were freed."""
    from orchestrator.models import OrchestratorInstance

    gone = list(
        OrchestratorInstance.objects.filter(
            Q(stopped_at__isnull=False)
            | Q(heartbeat_at__lt=now - dt.timedelta(seconds=stale_after_s))
        ).values_list("name", flat=True)
    )
    if not gone:
        return 0
    freed = 0
    # Sessions before missions (the documented lock order), each in id order.
    for model in (BrowserSession, Mission):
        with transaction.atomic():
            held = model.objects.filter(locked_by__in=gone, locked_until__isnull=False)
            ids = list(
                held.order_by("id").select_for_update(skip_locked=True).values_list("id", flat=True)
            )
            if ids:
                freed += model.objects.filter(pk__in=ids, locked_by__in=gone).update(
                    lease_token=F("lease_token") + 1, locked_by="", locked_until=None
                )
    if freed:
        logger.warning("freed %d leases of gone orchestrator instances %s", freed, gone)
    return freed
