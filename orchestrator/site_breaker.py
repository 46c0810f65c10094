"""Per-site circuit breaker, kept in one `DomainBreaker` row per domain.

- closed: results are counted in a window (`site_breaker_window_s`); when at least
  `site_breaker_min_results` came back and the share of `blocked` reaches
  `site_breaker_block_rate`, or `site_breaker_failed_sessions` sessions of the domain
  failed (not infrastructure faults) within the window, the domain is paused: no new
  sessions for it (allocation asks `paused_reason`), `domain.paused` is published
  (webhooks) and the dashboard says so.
- open: after `site_breaker_cooldown_s` the next allocation is the probe; its first
  `site_breaker_probe_results` results close the breaker, or pause it again.
- an operator may resume a paused domain at any time (API, dashboard, admin).

Results come from `proxy_health.record` (the page-saving transaction); failed sessions
from the `session.failed` event.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from orchestrator import events, fault_blame, pgbatch
from orchestrator.models import DomainBreaker, Mission, MissionEvent
from orchestrator.states import ErrorCode
from registry import config
from registry.config import Config
from registry.models import normalize_domain

logger = logging.getLogger(__name__)

WAIT_CODE = "ALLOC_DOMAIN_PAUSED"
# Session endings that count against a site (infrastructure faults are excluded).
SESSION_FAILURE_CODES = [
    ErrorCode.SESSION_OPEN_FAILED.value,
    ErrorCode.SESSION_PROVIDER_ERROR.value,
    ErrorCode.SESSION_FAILED.value,
    ErrorCode.SESSION_STUCK.value,
]


def _row(domain: str, now: dt.datetime) -> DomainBreaker:
    row, _ = DomainBreaker.objects.select_for_update().get_or_create(
        domain=normalize_domain(domain), defaults={"updated_at": now}
    )
    return row


def _reset_window(row: DomainBreaker, now: dt.datetime) -> None:
    row.window_started_at = now
    row.results = 0
    row.blocked = 0


def _trip(row: DomainBreaker, reason: str, now: dt.datetime, cfg: Config) -> None:
    row.state = DomainBreaker.State.OPEN
    row.paused_until = now + dt.timedelta(seconds=cfg.site_breaker_cooldown_s)
    row.reason = reason[:500]
    row.trips += 1
    row.opened_at = now
    _reset_window(row, now)
    events.publish("domain.paused", domain=row.domain, reason=row.reason)
    logger.warning("domain %s paused: %s", row.domain, row.reason, extra={"domain": row.domain})


def record_results(
    domain: str, results: int, blocked: int, now: dt.datetime, cfg: Config
) -> DomainBreaker | None:
    """Count a page of results of `domain` in a short transaction of its own.

    Called after the page's transaction committed (`proxy_health.record` uses
    `on_commit`), so the domain's shared row is never locked while a page is being
    saved; a page rolled back is not counted, a crash right after a commit loses one
    page of statistics (harmless for a rate over a window)."""
    if not results:
        return None
    with transaction.atomic():
        return _record_results(domain, results, blocked, now, cfg)


def record_many_results(counts: dict[str, tuple[int, int]], now: dt.datetime, cfg: Config) -> None:
    """`record_results` of a batch of pages, as {domain: (results, blocked)}: the closed
    breakers inside their window take their counts at once (`_count_fast`); a domain
    that needs more (its first page in a window, a probe, a trip) gets a short
    transaction of its own, as with `record_results`."""
    merged: dict[str, tuple[int, int]] = {}
    for domain, (results, blocked) in counts.items():
        if results:
            d = normalize_domain(domain)
            r, b = merged.get(d, (0, 0))
            merged[d] = (r + results, b + blocked)
    since = now - dt.timedelta(seconds=cfg.site_breaker_window_s)
    fast = _count_fast(merged, now, since)
    fast.update(_create_counted({d: c for d, c in merged.items() if d not in fast}, now))
    for d, (results, blocked) in merged.items():
        counted = fast.get(d)
        if counted is not None and not _should_trip(*counted, cfg):
            continue
        with transaction.atomic():
            if counted is None:
                _apply_results(d, results, blocked, now, cfg)
            else:
                _apply_results(d, 0, 0, now, cfg)  # already counted: lock only to trip


def _should_trip(total: int, n_blocked: int, cfg: Config) -> bool:
    return total >= cfg.site_breaker_min_results and n_blocked / total >= (
        cfg.site_breaker_block_rate
    )


def _record_results(
    domain: str, results: int, blocked: int, now: dt.datetime, cfg: Config
) -> DomainBreaker | None:
    d = normalize_domain(domain)
    since = now - dt.timedelta(seconds=cfg.site_breaker_window_s)
    # Fast path: a closed breaker inside its window only adds to its counters (one
    # conditional UPDATE); the row is locked for trips and window changes only.
    counted = _count_fast({d: (results, blocked)}, now, since).get(d)
    if counted is None:
        return _apply_results(d, results, blocked, now, cfg)
    if not _should_trip(*counted, cfg):
        return None
    return _apply_results(d, 0, 0, now, cfg)  # already counted: lock only to trip


def _apply_results(
    d: str, results: int, blocked: int, now: dt.datetime, cfg: Config
) -> DomainBreaker:
    """The locked path (caller's transaction): window, probe and trip decisions."""
    window = dt.timedelta(seconds=cfg.site_breaker_window_s)
    row = _row(d, now)
    if row.state == DomainBreaker.State.OPEN and not row.is_paused(now):
        # Cool-down over: these are the probe's results.
        row.state = DomainBreaker.State.PROBING
        _reset_window(row, now)
    if row.window_started_at is None or row.window_started_at + window < now:
        _reset_window(row, now)
    row.results += results
    row.blocked += blocked
    rate = row.blocked / row.results if row.results else 0.0
    if row.state == DomainBreaker.State.PROBING:
        if row.results >= cfg.site_breaker_probe_results:
            if rate >= cfg.site_breaker_block_rate:
                _trip(
                    row,
                    f"teste falhou: {rate:.0%} bloqueados em {row.results} resultados",
                    now,
                    cfg,
                )
            else:
                row.state = DomainBreaker.State.CLOSED
                row.paused_until = None
                row.reason = ""
                _reset_window(row, now)
    elif (
        row.state == DomainBreaker.State.CLOSED
        and row.results >= cfg.site_breaker_min_results
        and rate >= cfg.site_breaker_block_rate
    ):
        _trip(
            row,
            f"{rate:.0%} dos resultados bloqueados ({row.blocked} de {row.results}) "
            f"em {cfg.site_breaker_window_s // 60} min",
            now,
            cfg,
        )
    row.updated_at = now
    row.save()
    return row


def _create_counted(
    counts: dict[str, tuple[int, int]], now: dt.datetime
) -> dict[str, tuple[int, int]]:
    """The breaker rows of domains that have none yet, created closed with these counts
    in a window from `now` (what the locked path writes for a new domain), in one
    statement on PostgreSQL; returns the counts of the rows it created (a row another
    process created meanwhile is left alone: its domain takes the locked path)."""
    if not counts or connection.vendor != "postgresql":
        return {}
    table = connection.ops.quote_name(DomainBreaker._meta.db_table)
    domains = sorted(counts)
    rows = pgbatch.execute_unnest(
        f"INSERT INTO {table} (domain, state, reason, window_started_at, results, blocked, "
        "trips, resumed_by, updated_at) SELECT v.domain, %(closed)s, '', %(now)s, v.results, "
        "v.blocked, 0, '', %(now)s FROM {rows} ORDER BY v.domain "
        "ON CONFLICT (domain) DO NOTHING RETURNING domain, results, blocked",
        {
            "domain": ("text", domains),
            "results": ("int", [counts[d][0] for d in domains]),
            "blocked": ("int", [counts[d][1] for d in domains]),
        },
        {"closed": DomainBreaker.State.CLOSED.value, "now": now},
    )
    return {str(d): (int(r), int(b)) for d, r, b in rows}


def _count_fast(
    counts: dict[str, tuple[int, int]], now: dt.datetime, since: dt.datetime
) -> dict[str, tuple[int, int]]:
    """Add {domain: (results, blocked)} to the breakers that are closed and inside their
    window; returns their new counts by domain (a domain missing from the answer needs
    the locked path). On PostgreSQL one statement for all, rows locked in domain order."""
    if not counts:
        return {}
    if connection.vendor != "postgresql":
        out: dict[str, tuple[int, int]] = {}
        for d, (results, blocked) in counts.items():
            fast = DomainBreaker.objects.filter(
                domain=d, state=DomainBreaker.State.CLOSED, window_started_at__gte=since
            )
            if fast.update(
                results=F("results") + results, blocked=F("blocked") + blocked, updated_at=now
            ):
                row = fast.values_list("results", "blocked").first()
                if row is not None:
                    out[d] = row
        return out
    table = connection.ops.quote_name(DomainBreaker._meta.db_table)
    domains = sorted(counts)
    rows = pgbatch.execute_unnest(
        f"WITH locked AS MATERIALIZED (SELECT b.id FROM {table} b JOIN {{rows}} "
        "ON v.domain = b.domain WHERE b.state = %(closed)s AND b.window_started_at >= %(since)s "
        f"ORDER BY b.domain FOR UPDATE OF b) UPDATE {table} t "
        "SET results = t.results + v.results, blocked = t.blocked + v.blocked, "
        "updated_at = %(now)s FROM locked, {rows} WHERE t.id = locked.id AND v.domain = t.domain "
        "RETURNING t.domain, t.results, t.blocked",
        {
            "domain": ("text", domains),
            "results": ("int", [counts[d][0] for d in domains]),
            "blocked": ("int", [counts[d][1] for d in domains]),
        },
        {"closed": DomainBreaker.State.CLOSED.value, "since": since, "now": now},
    )
    return {str(d): (int(r), int(b)) for d, r, b in rows}


def session_failed(domain: str, now: dt.datetime, cfg: Config) -> DomainBreaker | None:
    """Count the domain's failed sessions in the window; trip at the threshold."""
    d = normalize_domain(domain)
    since = now - dt.timedelta(seconds=cfg.site_breaker_window_s)
    failed = (
        MissionEvent.objects.filter(
            kind=MissionEvent.Kind.SESSION,
            error_code__in=SESSION_FAILURE_CODES,
            created_at__gte=since,
            mission__domain=d,
        )
        .exclude(data__infra=True)
        # Events written before `fault` existed count as before.
        .exclude(data__has_key="fault", data__fault__in=fault_blame.NOT_THE_SITES)
        .count()
    )
    if failed < cfg.site_breaker_failed_sessions:
        return None
    row = _row(d, now)
    if row.state == DomainBreaker.State.CLOSED or (
        row.state == DomainBreaker.State.PROBING
        and (row.opened_at is None or row.opened_at < since)
    ):
        _trip(
            row,
            f"{failed} sessões falharam em {cfg.site_breaker_window_s // 60} min",
            now,
            cfg,
        )
        row.updated_at = now
        row.save()
    return row


def paused_reason(domain: str, now: dt.datetime) -> str:
    """Why no new session may open for `domain` now ("" when it may)."""
    return paused_reasons([domain], now)[domain]


def paused_reasons(domains: Iterable[str], now: dt.datetime) -> dict[str, str]:
    """`paused_reason` of every domain of a batch, in one query."""
    wanted = {d: normalize_domain(d) for d in domains}
    rows = {
        row.domain: row
        for row in DomainBreaker.objects.filter(
            domain__in=set(wanted.values()),
            state=DomainBreaker.State.OPEN,
            paused_until__gt=now,
        ).only("domain", "paused_until", "reason")
    }
    return {d: _reason(rows.get(n)) for d, n in wanted.items()}


def _reason(row: DomainBreaker | None) -> str:
    if row is None or row.paused_until is None:
        return ""
    until = timezone.localtime(row.paused_until).strftime("%H:%M")
    return f"domínio {row.domain} pausado pelo disjuntor até {until}: {row.reason}"


def resume(domain: str, *, actor: str, now: dt.datetime | None = None) -> DomainBreaker | None:
    """An operator lifts the pause at once."""
    now = now or timezone.now()
    with transaction.atomic():
        row = (
            DomainBreaker.objects.select_for_update()
            .filter(domain=normalize_domain(domain))
            .first()
        )
        if row is None:
            return None
        row.state = DomainBreaker.State.CLOSED
        row.paused_until = None
        row.reason = ""
        row.resumed_by = actor[:150]
        row.resumed_at = now
        _reset_window(row, now)
        row.updated_at = now
        row.save()
    events.publish("domain.resumed", domain=row.domain)
    return row


def _on_event(sender: Any, name: str, payload: dict[str, Any], **kwargs: Any) -> None:
    mission_id = payload.get("mission_id")
    if name != "session.failed" or not isinstance(mission_id, int):
        return
    domain = Mission.objects.filter(pk=mission_id).values_list("domain", flat=True).first()
    if not domain:
        return
    try:
        with transaction.atomic():
            session_failed(domain, timezone.now(), config.load())
    except Exception:  # the breaker must never break the session ending it watches
        logger.exception("site breaker update failed for %s", domain)


events.event_published.connect(_on_event, dispatch_uid="orchestrator.site_breaker")
