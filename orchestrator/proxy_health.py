"""Proxy x site health, learned from results and shared through the database.

Per (proxy, domain) a score: +1 per failure that says the proxy is the problem there
(blocked, proxy error, timeout), -0.5 per success, never below 0. At
`proxy_health_threshold` (3) the proxy is blocked for that domain for
`proxy_health_block_s` (30 min) with the reason; allocation skips it for that domain
meanwhile. When the time-box ends the proxy gets one probe: its score is set just
under the threshold, so one more failure blocks it again and successes bring it down.
A success while blocked (a session opened before the block) lifts the block at once.

Sessions retire like Crawlee's session pool (error score 3, 50 uses, 50 minutes of
age): a READY session past any limit is closed between jobs (by the WorkerManager's
dispatch) and the SessionManager opens its replacement (`allocation.replenish_sessions`)
on the least recently used proxy, another one. A session running a job when its proxy
gets blocked for its site (or its score passes the limit) is marked for retirement
(`mark_busy_sessions`): it no longer counts as one of its mission's sessions, so its
replacement opens at once, gets no new job, and is closed when its job ends.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.functions import Greatest, Now

from orchestrator import events, leases, pgbatch, site_breaker, states
from orchestrator.models import BrowserSession, MissionEvent, ProxyDomainHealth
from orchestrator.states import SessionStatus
from registry.config import Config
from registry.models import normalize_domain

logger = logging.getLogger(__name__)

# Worker result codes that blame the proxy for this site (one list: `states`).
FAILURE_CODES = states.PROXY_FAULT_WORKER_CODES
SUCCESS_WEIGHT = 0.5

# Crawlee's SessionPool defaults.
SESSION_MAX_ERROR_SCORE = 3.0
SESSION_MAX_USAGE = 50
SESSION_MAX_AGE_S = 50 * 60


@dataclass(frozen=True)
class Tally:
    successes: int = 0
    failures: int = 0
    codes: tuple[tuple[str, int], ...] = ()

    @property
    def delta(self) -> float:
        return self.failures - SUCCESS_WEIGHT * self.successes


def tally(results: Iterable[Any]) -> Tally:
    """Count a page of worker results (objects with `status` and `error_code`)."""
    ok = 0
    codes: dict[str, int] = {}
    for r in results:
        if r.status == "ok":
            ok += 1
        elif (r.error_code or "") in FAILURE_CODES:
            codes[r.error_code] = codes.get(r.error_code, 0) + 1
    return Tally(ok, sum(codes.values()), tuple(sorted(codes.items())))


def record(
    session: BrowserSession, domain: str, results: Iterable[Any], now: dt.datetime, cfg: Config
) -> ProxyDomainHealth | None:
    """Learn from one page of results of `session` (caller's transaction)."""
    t = tally(results)
    if not (t.successes or t.failures):
        return None
    # After commit, in its own short transaction: the domain's breaker row is shared by
    # every session of the site and must not stay locked while this page is saved.
    n_results, n_blocked = t.successes + t.failures, dict(t.codes).get("blocked", 0)
    transaction.on_commit(
        lambda: site_breaker.record_results(domain, n_results, n_blocked, now, cfg)
    )
    if t.failures or t.successes:
        BrowserSession.objects.filter(pk=session.pk).update(
            error_score=Greatest(F("error_score") + t.delta, 0.0)
        )
    if not session.proxy_id:
        return None
    d = normalize_domain(domain)
    row, _ = ProxyDomainHealth.objects.select_for_update().get_or_create(
        proxy_id=session.proxy_id, domain=d, defaults={"updated_at": now}
    )
    blocked_now = _learn(row, t, session, now, cfg)
    row.save()
    if blocked_now:
        _blocked(row, session, cfg)
    return row


def record_many(
    pages: list[tuple[BrowserSession, str, list[Any]]], now: dt.datetime, cfg: Config
) -> None:
    """`record` of several pages (session, domain, results) in a few statements for
    all of them (caller's transaction), except the sessions' `error_score`, which the
    caller writes in its own update of the sessions (`tally(results).delta`). The
    (proxy, domain) rows are locked in id order, missing ones created first, and all
    written at once."""
    learned: list[tuple[BrowserSession, int, str, Tally]] = []
    per_domain: dict[str, tuple[int, int]] = {}
    for session, domain, results in pages:
        t = tally(results)
        if not (t.successes or t.failures):
            continue
        n_results, n_blocked = per_domain.get(domain, (0, 0))
        per_domain[domain] = (
            n_results + t.successes + t.failures,
            n_blocked + dict(t.codes).get("blocked", 0),
        )
        if session.proxy_id:
            learned.append((session, session.proxy_id, normalize_domain(domain), t))
    if per_domain:
        transaction.on_commit(partial(site_breaker.record_many_results, per_domain, now, cfg))
    if not learned:
        return
    keys = {(proxy_id, d) for _, proxy_id, d, _ in learned}
    cond = pgbatch.rows_in(ProxyDomainHealth, ["proxy", "domain"], sorted(keys))

    def lock() -> dict[tuple[int, str], ProxyDomainHealth]:
        rows = ProxyDomainHealth.objects.filter(cond).order_by("id").select_for_update()
        return {(r.proxy_id, r.domain): r for r in rows}

    rows = lock()
    if len(rows) < len(keys):
        ProxyDomainHealth.objects.bulk_create(
            [
                ProxyDomainHealth(proxy_id=proxy_id, domain=d, updated_at=now)
                for proxy_id, d in keys - set(rows)
            ],
            ignore_conflicts=True,
        )
        rows = lock()
    blocked: list[tuple[ProxyDomainHealth, BrowserSession]] = []
    for session, proxy_id, d, t in learned:
        row = rows[(proxy_id, d)]
        if _learn(row, t, session, now, cfg):
            blocked.append((row, session))
    pgbatch.bulk_update(
        ProxyDomainHealth,
        list(rows.values()),
        [
            "score",
            "successes",
            "failures",
            "last_success_at",
            "last_failure_at",
            "blocked_until",
            "blocked_reason",
            "updated_at",
        ],
    )
    for row, session in blocked:
        _blocked(row, session, cfg)


def _learn(
    row: ProxyDomainHealth, t: Tally, session: BrowserSession, now: dt.datetime, cfg: Config
) -> bool:
    """Apply a page's tally to the (proxy, domain) row in memory. True when this page
    blocked the proxy for the domain."""
    d = row.domain
    threshold = float(cfg.proxy_health_threshold)
    was_blocked = row.is_blocked(now)
    score = row.score
    if row.blocked_until is not None and not was_blocked:
        score = min(score, threshold - 1)  # time-box over: one probe
    score = max(0.0, score + t.delta)
    row.score = score
    row.successes += t.successes
    row.failures += t.failures
    if t.successes:
        row.last_success_at = now
    if t.failures:
        row.last_failure_at = now
    blocked_now = False
    if t.successes and (was_blocked or row.blocked_until is not None) and t.failures == 0:
        row.blocked_until = None
        row.blocked_reason = ""
        row.score = min(score, threshold - 1)
    elif score >= threshold and not was_blocked:
        what = ", ".join(f"{n} {code}" for code, n in t.codes)
        row.blocked_until = now + dt.timedelta(seconds=cfg.proxy_health_block_s)
        row.blocked_reason = (
            f"pontuação {score:g} >= {threshold:g} em {d} ({what}) na sessão {session.session_key}"
        )[:500]
        blocked_now = True
    row.updated_at = now
    return blocked_now


def _blocked(row: ProxyDomainHealth, session: BrowserSession, cfg: Config) -> None:
    """The event and log line of a proxy just blocked for a domain."""
    d = row.domain
    minutes = round(cfg.proxy_health_block_s / 60)
    MissionEvent.objects.create(
        mission_id=session.mission_id,
        kind=MissionEvent.Kind.INFO,
        attempt=session.attempt,
        message=f"Proxy {session.proxy_external_id} bloqueado para {d} por {minutes} min: "
        + row.blocked_reason,
        data={"proxy": session.proxy_external_id, "domain": d, "score": row.score},
        created_at=row.updated_at,
    )
    events.publish("proxy.blocked", proxy_id=session.proxy_id, domain=d)
    logger.info(
        "proxy %s blocked for %s: %s",
        session.proxy_external_id,
        d,
        row.blocked_reason,
        extra={"mission_id": session.mission_id},
    )


def blocked_external_ids(domain: str, now: dt.datetime) -> list[str]:
    """External ids of the proxies blocked for `domain` now (allocation excludes them)."""
    return blocked_by_domain([domain], now)[domain]


def blocked_by_domain(domains: Iterable[str], now: dt.datetime) -> dict[str, list[str]]:
    """`blocked_external_ids` of every domain of a batch, in one query."""
    wanted = {d: normalize_domain(d) for d in domains}
    found: dict[str, list[str]] = {}
    for d, external_id in ProxyDomainHealth.objects.filter(
        domain__in=set(wanted.values()), blocked_until__gt=now
    ).values_list("domain", "proxy__external_id"):
        found.setdefault(d, []).append(external_id)
    return {d: found.get(n, []) for d, n in wanted.items()}


def lift(row: ProxyDomainHealth) -> None:
    """An operator (or a successful probe) clears the block and the score."""
    ProxyDomainHealth.objects.filter(pk=row.pk).update(
        score=0.0, blocked_until=None, blocked_reason=""
    )


def lease_free() -> Q:
    # Same as leases.lease_free (allocation imports this module).
    return Q(locked_until__isnull=True) | Q(locked_until__lt=Now())


# Why a session is retired: (mission id, session key, attempt, reason in pt-BR).
Retiree = tuple[int, str, int, str]
BLOCKED_FOR_SITE = "proxy bloqueado para o site"


def error_score_reason(score: float) -> str:
    return f"pontuação de erro {score:g}"


def retire_sessions(now: dt.datetime, limit: int = 100) -> int:
    """Close READY sessions past Crawlee's limits (error score, uses, age); their
    missions get replacements on other proxies. Returns how many were retired."""
    too_old = now - dt.timedelta(seconds=SESSION_MAX_AGE_S)
    due = (
        BrowserSession.objects.filter(status=SessionStatus.READY, job_key="")
        .filter(lease_free())
        .annotate(on_blocked=Exists(_blocked_for_its_site(now)))
        .filter(
            Q(error_score__gte=SESSION_MAX_ERROR_SCORE)
            | Q(opened_at__lt=too_old)
            | Q(items_done__gte=SESSION_MAX_USAGE)
            | Q(items_failed__gte=SESSION_MAX_USAGE)
            | Q(retire_reason__gt="")
            | Q(on_blocked=True)
        )
        .values_list(
            "id",
            "mission_id",
            "session_key",
            "error_score",
            "opened_at",
            "attempt",
            "items_done",
            "items_failed",
            "retire_reason",
            "on_blocked",
        )[:limit]
    )
    reasons: dict[int, Retiree] = {}
    for pk, mission_id, key, score, opened_at, attempt, done, failed, marked, blocked in due:
        uses = done + failed
        if marked:
            why = marked
        elif blocked:
            why = BLOCKED_FOR_SITE
        elif score >= SESSION_MAX_ERROR_SCORE:
            why = error_score_reason(score)
        elif opened_at is not None and opened_at < too_old:
            why = f"idade acima de {SESSION_MAX_AGE_S // 60} min"
        elif uses >= SESSION_MAX_USAGE:
            why = f"{uses} usos"
        else:
            continue
        reasons[pk] = (mission_id, key, attempt, why)
    if not reasons:
        return 0
    with transaction.atomic():
        # Still READY, jobless and unleased (rows another process holds are skipped,
        # for the next tick); the token bump fences out any process that claims them.
        won = list(
            BrowserSession.objects.filter(
                pk__in=list(reasons), status=SessionStatus.READY, job_key=""
            )
            .filter(lease_free())
            .order_by("id")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("id", flat=True)
        )
        if not won:
            return 0
        _close_retired(reasons, won, now)
    return len(won)


def _blocked_for_its_site(now: dt.datetime) -> Any:
    """The (proxy, domain) health rows that block a session's proxy for its site now
    (for `Exists`, correlated on the session's proxy and domain)."""
    return ProxyDomainHealth.objects.filter(
        proxy_id=OuterRef("proxy_id"), domain=OuterRef("domain"), blocked_until__gt=now
    )


def mark_busy_sessions(now: dt.datetime, limit: int = 100) -> int:
    """Mark for retirement the sessions running a job whose proxy got blocked for their
    site, or whose error score passed the limit (issue #15 case 4): they get no new job
    (`retire_claimed`, `retire_sessions` close them once the job ends) and no longer
    count as the mission's sessions for new jobs, so `allocation.replenish_sessions`
    opens their replacement on another proxy right away. Only `retire_reason` is
    written (the job's holder keeps its lease and writes its own columns); rows are
    locked in id order, sessions only. Returns how many were marked."""
    due = list(
        BrowserSession.objects.filter(
            status__in=[SessionStatus.READY, SessionStatus.BUSY], retire_reason=""
        )
        .exclude(status=SessionStatus.READY, job_key="")
        .annotate(on_blocked=Exists(_blocked_for_its_site(now)))
        .filter(Q(on_blocked=True) | Q(error_score__gte=SESSION_MAX_ERROR_SCORE))
        .values_list("id", "mission_id", "session_key", "attempt", "error_score", "on_blocked")[
            :limit
        ]
    )
    if not due:
        return 0
    why: dict[int, Retiree] = {}
    for pk, mission_id, key, attempt, score, blocked in due:
        reason = BLOCKED_FOR_SITE if blocked else error_score_reason(score)
        why[pk] = (mission_id, key, attempt, reason)
    marked: list[int] = []
    with transaction.atomic():
        won = leases.hold(BrowserSession.objects.filter(pk__in=list(why), retire_reason=""))
        for reason in sorted({why[pk][3] for pk in won}):
            group = sorted(pk for pk in won if why[pk][3] == reason)
            BrowserSession.objects.filter(pk__in=group).update(retire_reason=reason)
            marked.extend(group)
        _retirement_events(
            why,
            sorted(marked),
            "Sessão {key} será aposentada ao fim do job atual ({reason}); a substituta é "
            "aberta em outro proxy",
            now,
        )
    for pk in sorted(marked):
        events.publish("session.requested", mission_id=why[pk][0])
    return len(marked)


def retire_claimed(
    sessions: Iterable[BrowserSession], owner: str, now: dt.datetime, why: str = ""
) -> set[int]:
    """Retire the jobless sessions `owner` holds whose proxy is blocked for their
    mission's site, or whose error score is past the limit, or that are marked for
    retirement (the dispatcher, before it hands them a job: issue #15 case 4); with
    `why`, every one of them for that reason. They go CLOSING with their lease dropped
    (the token bump fences the holder) and the SessionManager opens replacements on
    other proxies. Returns the ids retired."""
    fresh = [s for s in sessions if not s.job_key]
    if not fresh:
        return set()
    if why:
        return _retire_held({s.pk: (s, why) for s in fresh}, owner, now)
    blocked = blocked_by_domain({s.mission.domain for s in fresh}, now)
    reasons: dict[int, tuple[BrowserSession, str]] = {}
    for s in fresh:
        if s.retire_reason:
            reasons[s.pk] = (s, s.retire_reason)
        elif s.proxy_external_id and s.proxy_external_id in blocked[s.mission.domain]:
            reasons[s.pk] = (s, f"proxy bloqueado para {normalize_domain(s.mission.domain)}")
        elif s.error_score >= SESSION_MAX_ERROR_SCORE:
            reasons[s.pk] = (s, error_score_reason(s.error_score))
    if not reasons:
        return set()
    return _retire_held(reasons, owner, now)


def _retire_held(
    why: dict[int, tuple[BrowserSession, str]], owner: str, now: dt.datetime
) -> set[int]:
    """`retire_claimed` of the sessions `why` names, with their reasons."""
    with transaction.atomic():
        won = leases.hold(
            BrowserSession.objects.filter(
                pk__in=list(why), status=SessionStatus.READY, job_key="", locked_by=owner
            )
        )
        _close_retired(
            {
                pk: (s.mission_id, s.session_key, s.attempt, reason)
                for pk, (s, reason) in why.items()
            },
            sorted(won),
            now,
        )
    return won


def _close_retired(why: dict[int, Retiree], ids: list[int], now: dt.datetime) -> None:
    """Close the retired sessions `ids` (locked by the caller): CLOSING with their lease
    dropped and the token bumped (fencing out any holder), one event each, and the
    SessionManager told (it opens the replacements)."""
    BrowserSession.objects.filter(pk__in=ids).update(
        status=SessionStatus.CLOSING,
        phase="retired",
        updated_at=now,
        lease_token=F("lease_token") + 1,
        locked_by="",
        locked_until=None,
    )
    _retirement_events(
        why, ids, "Sessão {key} aposentada ({reason}); será substituída em outro proxy", now
    )
    for pk in ids:
        events.publish("session.closing", mission_id=why[pk][0])


def _retirement_events(
    why: dict[int, Retiree], ids: list[int], message: str, now: dt.datetime
) -> None:
    """One session event per id, `message` given the session's key and reason."""
    pgbatch.insert(
        MissionEvent,
        [
            {
                "mission_id": why[pk][0],
                "kind": MissionEvent.Kind.SESSION.value,
                "attempt": why[pk][2],
                "message": message.format(key=why[pk][1], reason=why[pk][3]),
                "data": {"session": why[pk][1], "reason": why[pk][3]},
                "created_at": now,
            }
            for pk in ids
        ],
    )


def overview(now: dt.datetime, limit: int = 20) -> dict[str, Any]:
    """Blocked pairs and pairs on their way there (dashboard)."""
    rows = ProxyDomainHealth.objects.select_related("proxy").only(
        "id",
        "domain",
        "score",
        "successes",
        "failures",
        "blocked_until",
        "blocked_reason",
        "updated_at",
        "proxy__external_id",
        "proxy__type",
        "proxy__country",
    )
    return {
        "blocked": list(rows.filter(blocked_until__gt=now).order_by("blocked_until")[:limit]),
        "at_risk": list(
            rows.exclude(blocked_until__gt=now).filter(score__gt=0).order_by("-score")[:limit]
        ),
    }
