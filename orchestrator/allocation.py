"""Every claim lives here: due missions, worker slots, proxies, and sessions that need
action (with short, fenced leases).

Rules (DESIGN.md): no database lock is ever held across an HTTP call; claims use
`select_for_update(skip_locked=True)` on PostgreSQL (on SQLite the IMMEDIATE transaction
serializes them); worker slots and proxy usage are counted rows changed in the same
transaction as the sessions they belong to; leases expire by the database clock and
every write after an external call is conditional on the lease token.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db import connection, models, transaction
from django.db.models import Case, Count, Exists, F, OuterRef, Q, Value, When
from django.db.models.functions import Greatest, Now
from django.utils import timezone

from orchestrator import events, proxy_health, site_breaker, states
from orchestrator.models import BrowserSession, Mission, MissionEvent, MissionItem
from orchestrator.states import ErrorCode, ItemStatus, MissionStatus, SessionStatus
from registry import geo
from registry.config import Config
from registry.models import (
    DEFAULT_DOMAIN,
    HealthStatus,
    Proxy,
    ProxyStatus,
    SiteConfig,
    Worker,
    Writer,
    normalize_domain,
)

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=models.Model)


# --------------------------------------------------------------------------- leases


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
    """PostgreSQL: the same claim as one statement, one round trip (DESIGN.md, "What the
    measurements say about claims"; bench/claims.py measures it against raw psycopg).

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


# --------------------------------------------------------------------------- capacity


def usable_workers_q(now: dt.datetime) -> Q:
    return (
        Q(enabled=True, draining=False, active_sessions__lt=F("max_sessions"))
        & ~Q(health_status=HealthStatus.OFFLINE)
        & (Q(circuit_open_until__isnull=True) | Q(circuit_open_until__lte=now))
    )


def usable_proxies_q(site: SiteConfig, now: dt.datetime, exclude: Iterable[str] = ()) -> Q:
    q = Q(enabled=True, active_sessions__lt=F("max_sessions")) & (
        Q(status=ProxyStatus.AVAILABLE)
        | Q(status=ProxyStatus.COOLDOWN, cooldown_until__lte=now)
        | Q(status=ProxyStatus.COOLDOWN, cooldown_until__isnull=True)
    )
    if site.proxy_types:
        q &= Q(type__in=site.proxy_types)
    if site.countries:
        q &= Q(country__in=[c.upper() for c in site.countries])
    if site.require_verified_geo:
        q &= geo.verified_q()
    blocked = set(site.blocked_proxies or ()) | set(exclude)
    if blocked:
        q &= ~Q(external_id__in=blocked)
    return q


@dataclass
class SiteCache:
    """Site configs of one step, looked up once per domain."""

    configs: dict[str, SiteConfig] = field(default_factory=dict)

    def get(self, domain: str) -> SiteConfig:
        key = normalize_domain(domain)
        if key not in self.configs:
            self.configs[key] = SiteConfig.for_domain(key)
        return self.configs[key]

    def prefetch(self, domains: Iterable[str]) -> None:
        """Look up every domain of a batch in one query (`SiteConfig.for_domain` each)."""
        wanted = {normalize_domain(d) for d in domains} - set(self.configs)
        if not wanted:
            return
        rows = {
            c.domain: c for c in SiteConfig.objects.filter(domain__in=[*wanted, DEFAULT_DOMAIN])
        }
        default = rows.get(DEFAULT_DOMAIN) or SiteConfig(domain=DEFAULT_DOMAIN)
        for key in wanted:
            self.configs[key] = rows.get(key) or default


@dataclass
class Allocation:
    sessions: list[BrowserSession]
    wait_code: str = ""
    wait_reason: str = ""


@dataclass
class Prefetched:
    """What `allocate_sessions` reads per mission, read once for a batch of missions:
    paused domains, proxies blocked per domain, sessions per mission so far."""

    paused: dict[str, str]
    blocked: dict[str, list[str]]
    sessions: dict[int, int]

    @classmethod
    def load(cls, missions: list[Mission], now: dt.datetime) -> Prefetched:
        domains = {m.domain for m in missions}
        return cls(
            paused=site_breaker.paused_reasons(domains, now),
            blocked=proxy_health.blocked_by_domain(domains, now),
            sessions=dict(
                BrowserSession.objects.filter(mission__in=[m.pk for m in missions])
                .values_list("mission")
                .annotate(n=Count("id"))
                .order_by()
            ),
        )


def sessions_wanted(site: SiteConfig, pending: int) -> int:
    return min(site.max_sessions, max(1, math.ceil(pending / max(1, site.items_per_job))))


@dataclass
class Request:
    """Sessions wanted for one mission (in `allocate_many`)."""

    mission: Mission
    n: int
    site: SiteConfig
    exclude_proxies: Iterable[str] = ()


def allocate_sessions(
    mission: Mission,
    n: int,
    site: SiteConfig,
    now: dt.datetime,
    *,
    exclude_proxies: Iterable[str] = (),
    worker_pool: list[Worker] | None = None,
    worker_slots: dict[int, list[int]] | None = None,
    prefetched: Prefetched | None = None,
) -> Allocation:
    """Create up to `n` requested sessions for `mission` (`allocate_many` for one)."""
    return allocate_many(
        [Request(mission, n, site, exclude_proxies)],
        now,
        worker_pool=worker_pool,
        worker_slots=worker_slots,
        prefetched=prefetched,
    )[0]


def allocate_many(
    requests: Sequence[Request],
    now: dt.datetime,
    *,
    worker_pool: list[Worker] | None = None,
    worker_slots: dict[int, list[int]] | None = None,
    prefetched: Prefetched | None = None,
) -> list[Allocation]:
    """Create the requested sessions of several missions, taking worker slots and
    proxies in the caller's transaction (which must hold the missions' rows), in the
    order given (the first request is served first). Returns one Allocation each.

    A few statements for the whole batch, not per mission: one locking read of the
    usable proxies per distinct proxy filter (site rules and blocked proxies), one
    count of their held slots, one INSERT of the sessions, one UPDATE per worker and
    one per distinct number of sessions a proxy got.

    `worker_pool` and `worker_slots` (from `lock_usable_workers` and `free_slots`) let a
    caller that allocates in several calls lock and count once; both are updated in
    place as slots are taken; `prefetched` holds what was read for the whole batch."""
    assert transaction.get_connection().in_atomic_block, "allocate inside a transaction"
    results: list[Allocation | None] = [None] * len(requests)
    wanted = [i for i, r in enumerate(requests) if r.n > 0]
    for i, r in enumerate(requests):
        if r.n <= 0:
            results[i] = Allocation([])
    if not wanted:
        return [r or Allocation([]) for r in results]
    if worker_pool is None:
        worker_pool = lock_usable_workers(now)
    if worker_slots is None:
        worker_slots = free_slots("worker", {w.pk: w.max_sessions for w in worker_pool})

    def free_workers() -> list[Worker]:
        return [
            w for w in worker_pool if w.active_sessions < w.max_sessions and worker_slots.get(w.pk)
        ]

    if prefetched is None:
        domains = {requests[i].mission.domain for i in wanted}
        paused = {d: site_breaker.paused_reason(d, now) for d in domains}
        blocked = {d: proxy_health.blocked_external_ids(d, now) for d in domains}
    else:
        paused, blocked = prefetched.paused, prefetched.blocked

    # One locking read of candidate proxies per distinct proxy filter; a proxy that
    # fits several filters is one object (its room is shared).
    proxy_by_pk: dict[int, Proxy] = {}
    candidates_of: dict[tuple[Any, ...], list[int]] = {}
    filter_key: dict[int, tuple[Any, ...]] = {}
    if free_workers():
        groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for i in wanted:
            r = requests[i]
            if paused[r.mission.domain]:
                continue
            exclude = frozenset([*r.exclude_proxies, *blocked[r.mission.domain]])
            key = (
                tuple(r.site.proxy_types or ()),
                tuple(r.site.countries or ()),
                bool(r.site.require_verified_geo),
                frozenset(r.site.blocked_proxies or ()) | exclude,
            )
            filter_key[i] = key
            groups[key].append(i)
        for key, members in groups.items():
            first = requests[members[0]]
            limit = sum(requests[i].n for i in members) * 2
            rows = list(
                Proxy.objects.filter(usable_proxies_q(first.site, now, key[3]))
                .order_by(F("last_used_at").asc(nulls_first=True), "id")
                .select_for_update(skip_locked=True, of=("self",))[:limit]
            )
            candidates_of[key] = [proxy_by_pk.setdefault(p.pk, p).pk for p in rows]
    proxy_slots = free_slots("proxy", {pk: p.max_sessions for pk, p in proxy_by_pk.items()})
    room = {pk: p.max_sessions - p.active_sessions for pk, p in proxy_by_pk.items()}
    used_here = dict.fromkeys(room, 0)

    chosen: dict[int, list[tuple[Worker, int, Proxy | None, int | None]]] = {}
    for i in wanted:
        r = requests[i]
        free = free_workers()
        if not free:
            reason = "nenhum worker disponível" if not worker_pool else "workers sem capacidade"
            if worker_pool:
                used = sum(w.active_sessions for w in worker_pool)
                reason += f" ({used}/{sum(w.max_sessions for w in worker_pool)})"
            code = ErrorCode.ALLOC_NO_WORKER if not worker_pool else ErrorCode.ALLOC_NO_CAPACITY
            results[i] = Allocation([], code, reason)
            continue
        if paused[r.mission.domain]:
            results[i] = Allocation([], site_breaker.WAIT_CODE, paused[r.mission.domain])
            continue
        want_direct = not r.site.proxy_types and not r.site.countries
        candidates = [proxy_by_pk[pk] for pk in candidates_of.get(filter_key[i], [])]
        slots: list[tuple[Worker, int, Proxy | None, int | None]] = []
        for _ in range(r.n):
            open_workers = free_workers()
            if not open_workers:
                break
            # Spread over workers: the one with the most free slots (ties: lowest id).
            worker = max(open_workers, key=lambda w: (w.max_sessions - w.active_sessions, -w.pk))
            # Least recently used first; a proxy with room for several sessions is
            # reused only when every other fitting proxy is already used by this batch.
            fitting = [p for p in candidates if room[p.pk] > 0 and proxy_slots[p.pk]]
            proxy: Proxy | None = min(fitting, key=lambda p: used_here[p.pk]) if fitting else None
            if proxy is None and not want_direct:
                break
            proxy_slot = None
            if proxy is not None:
                room[proxy.pk] -= 1
                used_here[proxy.pk] += 1
                proxy_slot = proxy_slots[proxy.pk].pop(0)
            worker.active_sessions += 1
            slots.append((worker, worker_slots[worker.pk].pop(0), proxy, proxy_slot))
        if not slots:
            reason = _no_proxy_reason(r.site, r.mission.domain, now)
            results[i] = Allocation([], ErrorCode.ALLOC_NO_PROXY, reason)
            continue
        chosen[i] = slots

    if not chosen:
        return [r or Allocation([]) for r in results]
    if prefetched is not None:
        bases = {
            requests[i].mission.pk: prefetched.sessions.get(requests[i].mission.pk, 0)
            for i in chosen
        }
    else:
        bases = dict(
            BrowserSession.objects.filter(mission__in=[requests[i].mission.pk for i in chosen])
            .values_list("mission")
            .annotate(n=Count("id"))
            .order_by()
        )
    created: dict[int, list[BrowserSession]] = {}
    for i, slots in chosen.items():
        r = requests[i]
        mission, base = r.mission, bases.get(r.mission.pk, 0)
        created[i] = [
            BrowserSession(
                mission=mission,
                worker=worker,
                proxy=proxy,
                attempt=mission.attempt,
                session_key=f"m{mission.pk}-a{mission.attempt}-s{base + k + 1}",
                status=SessionStatus.REQUESTED,
                provider=(worker.providers or ["local"])[0],
                engine=r.site.engine,
                proxy_external_id=proxy.external_id if proxy else "",
                proxy_type=proxy.type if proxy else "",
                proxy_country=proxy.country if proxy else "",
                holds_slot=True,
                worker_slot=worker_slot,
                proxy_slot=proxy_slot,
            )
            for k, (worker, worker_slot, proxy, proxy_slot) in enumerate(slots)
        ]
    BrowserSession.objects.bulk_create([s for group in created.values() for s in group])
    per_worker: dict[int, int] = defaultdict(int)
    per_proxy: dict[int, int] = defaultdict(int)
    for slots in chosen.values():
        for worker, _, proxy, _ in slots:
            per_worker[worker.pk] += 1
            if proxy is not None:
                per_proxy[proxy.pk] += 1
    for worker_id, count in sorted(per_worker.items()):
        Worker.objects.filter(pk=worker_id).update(active_sessions=F("active_sessions") + count)
    by_count: dict[int, list[int]] = defaultdict(list)
    for proxy_id, count in per_proxy.items():
        by_count[count].append(proxy_id)
    for count, proxy_ids in sorted(by_count.items()):
        Proxy.objects.filter(pk__in=proxy_ids).update(
            active_sessions=F("active_sessions") + count,
            last_used_at=now,
            status=ProxyStatus.AVAILABLE,
            cooldown_until=None,
        )
    for i, sessions in created.items():
        results[i] = Allocation(sessions)
        events.publish("session.requested", mission_id=requests[i].mission.pk)
    return [r or Allocation([]) for r in results]


def free_slots(owner: str, limits: dict[int, int]) -> dict[int, list[int]]:
    """The slot numbers below each worker's or proxy's limit (`owner` is "worker" or
    "proxy"; `limits` maps its ids to `max_sessions`) that no slot-holding session uses,
    lowest first. Counted from the sessions themselves, so a drifted `active_sessions`
    counter can never hand out a slot twice; the caller holds the owners' rows locked,
    and the partial unique indexes on the slot numbers are the backstop."""
    if not limits:
        return {}
    held: dict[int, set[int]] = defaultdict(set)
    rows = BrowserSession.objects.filter(
        holds_slot=True, **{f"{owner}_id__in": list(limits)}
    ).values_list(f"{owner}_id", f"{owner}_slot")
    for owner_id, slot in rows:
        if slot is not None:
            held[owner_id].add(slot)
    return {pk: [s for s in range(limit) if s not in held[pk]] for pk, limit in limits.items()}


def lock_usable_workers(now: dt.datetime) -> list[Worker]:
    """Lock the usable workers in id order (no skip: few rows, short transactions, and a
    fixed order so that concurrent allocators never deadlock)."""
    return list(
        Worker.objects.filter(usable_workers_q(now)).order_by("id").select_for_update(of=("self",))
    )


def _no_proxy_reason(site: SiteConfig, domain: str, now: dt.datetime) -> str:
    """Plain words on why no proxy fits, e.g. for the mission's wait reason."""
    base = Proxy.objects.filter(enabled=True)
    if site.proxy_types:
        base = base.filter(type__in=site.proxy_types)
    if site.countries:
        base = base.filter(country__in=site.countries)
    counts = base.aggregate(
        total=Count("id"),
        blocked=Count("id", filter=Q(external_id__in=site.blocked_proxies or [])),
        cooldown=Count("id", filter=Q(status=ProxyStatus.COOLDOWN, cooldown_until__gt=now)),
        banned=Count("id", filter=Q(status__in=[ProxyStatus.BANNED, ProxyStatus.DISABLED])),
        busy=Count("id", filter=Q(active_sessions__gte=F("max_sessions"))),
    )
    kinds = "/".join(site.proxy_types) or "qualquer tipo"
    geo = "/".join(site.countries) or "qualquer país"
    if not counts["total"]:
        return f"nenhum proxy {kinds} {geo} cadastrado"
    parts = [f"{counts['total']} proxies {kinds} {geo}"]
    if counts["blocked"]:
        parts.append(f"{counts['blocked']} bloqueados para {domain}")
    if counts["cooldown"]:
        parts.append(f"{counts['cooldown']} em cooldown")
    if counts["busy"]:
        parts.append(f"{counts['busy']} em uso")
    if counts["banned"]:
        parts.append(f"{counts['banned']} banidos/desativados")
    return "nenhum proxy livre: " + ", ".join(parts)


# --------------------------------------------------------------------------- missions


def _pending_exists() -> Exists:
    return Exists(MissionItem.objects.filter(mission=OuterRef("pk"), status=ItemStatus.PENDING))


def default_writer_id() -> int | None:
    return Writer.objects.filter(is_default=True, enabled=True).values_list("id", flat=True).first()


def claim_due_missions(
    owner: str, now: dt.datetime, cfg: Config, *, limit: int | None = None
) -> list[tuple[Mission, Allocation]]:
    """Claim due QUEUED missions (priority, then age) and allocate their sessions, all
    in one transaction. Missions that cannot run yet keep waiting with a reason."""
    limit = limit or cfg.claim_batch_size
    outcomes: list[tuple[Mission, Allocation]] = []
    sites = SiteCache()
    with transaction.atomic():
        missions = list(
            Mission.objects.filter(status=MissionStatus.QUEUED)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=Now()))
            .order_by("-priority", "id")
            .select_for_update(skip_locked=True, of=("self",))[:limit]
        )
        if not missions:
            return []
        workers = lock_usable_workers(now)
        worker_slots = free_slots("worker", {w.pk: w.max_sessions for w in workers})
        has_default_writer = default_writer_id() is not None
        pending_counts = dict(
            MissionItem.objects.filter(
                mission__in=[m.pk for m in missions], status=ItemStatus.PENDING
            )
            .values_list("mission")
            .annotate(n=Count("id"))
            .order_by()
        )
        sites.prefetch(m.domain for m in missions)
        prefetched = Prefetched.load(missions, now)
        from orchestrator.managers.base import Move, transition_many  # (it imports us)

        moves: list[Move] = []
        requests: list[Request] = []
        for mission in missions:
            if mission.writer_id is None and not has_default_writer:
                _set_wait(mission, ErrorCode.WRITER_NOT_CONFIGURED, "nenhum writer configurado")
                outcomes.append((mission, Allocation([], ErrorCode.WRITER_NOT_CONFIGURED)))
                continue
            pending = pending_counts.get(mission.pk, 0)
            site = sites.get(mission.domain)
            if pending == 0:
                # Nothing left to scrape (e.g. a retry after every item was done).
                moves.append(Move(mission, "Nada pendente", fields={"wait_reason": ""}))
                outcomes.append((mission, Allocation([])))
                continue
            requests.append(Request(mission, sessions_wanted(site, pending), site))
        allocations = allocate_many(
            requests, now, worker_pool=workers, worker_slots=worker_slots, prefetched=prefetched
        )
        for request, allocation in zip(requests, allocations, strict=True):
            mission = request.mission
            if not allocation.sessions:
                _set_wait(mission, allocation.wait_code, allocation.wait_reason)
                outcomes.append((mission, allocation))
                continue
            moves.append(
                Move(
                    mission,
                    f"{len(allocation.sessions)} sess{'ão alocada' if len(allocation.sessions) == 1 else 'ões alocadas'}",
                    data={"sessions": [s.session_key for s in allocation.sessions]},
                    fields={"wait_reason": "", "session_rotations": 0},
                )
            )
            outcomes.append((mission, allocation))
        # Every claimed mission is still locked here, so each compare-and-set wins.
        transition_many(moves, MissionStatus.ATRIBUIDO, now=now)
    return outcomes


def _set_wait(mission: Mission, code: str, reason: str) -> None:
    text = f"{code}: {reason}" if reason else code
    if mission.wait_reason != text:
        Mission.objects.filter(pk=mission.pk).update(wait_reason=text[:500])
        mission.wait_reason = text[:500]


def replenish_sessions(owner: str, now: dt.datetime, cfg: Config, limit: int = 50) -> int:
    """Open sessions for running missions that have pending items and fewer live
    sessions than they may use: replacements after failures, within the rotation
    budget. Returns how many sessions were requested."""
    live = Q(sessions__status__in=states.SESSION_LIVE) & Q(sessions__attempt=F("attempt"))
    candidates = list(
        Mission.objects.filter(
            status__in=[MissionStatus.ATRIBUIDO, MissionStatus.EXTRAINDO],
            session_rotations__lte=cfg.max_session_rotations,
        )
        .filter(_pending_exists())
        .annotate(live=Count("sessions", filter=live))
        .values_list("id", "domain", "live")[:limit]
    )
    if not candidates:
        return 0
    sites = SiteCache()
    sites.prefetch(domain for _, domain, _ in candidates)
    requested = 0
    for mission_id, domain, live_count in candidates:
        site = sites.get(domain)
        if live_count >= site.max_sessions:
            continue
        with transaction.atomic():
            mission = (
                Mission.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(
                    pk=mission_id, status__in=[MissionStatus.ATRIBUIDO, MissionStatus.EXTRAINDO]
                )
                .first()
            )
            if mission is None:
                continue
            pending = MissionItem.objects.filter(mission=mission, status=ItemStatus.PENDING).count()
            live_now = BrowserSession.objects.filter(
                mission=mission, attempt=mission.attempt, status__in=states.SESSION_LIVE
            ).count()
            wanted = sessions_wanted(site, pending) - live_now
            if pending == 0 or wanted <= 0:
                continue
            # Proxies that failed this mission's sessions in this attempt rest elsewhere.
            failed_proxies = set(
                BrowserSession.objects.filter(
                    mission=mission,
                    attempt=mission.attempt,
                    status__in=[
                        SessionStatus.FAILED,
                        SessionStatus.STUCK,
                        SessionStatus.DISCONNECTED,
                    ],
                )
                .exclude(proxy_external_id="")
                .values_list("proxy_external_id", flat=True)
            )
            allocation = allocate_sessions(
                mission, wanted, site, now, exclude_proxies=failed_proxies
            )
            if not allocation.sessions and failed_proxies:
                # Better a proxy that failed before than none at all.
                allocation = allocate_sessions(mission, wanted, site, now)
            if allocation.sessions:
                requested += len(allocation.sessions)
                mission.log(
                    MissionEvent.Kind.SESSION,
                    f"{len(allocation.sessions)} sessões de reposição solicitadas",
                    now=now,
                    data={"sessions": [s.session_key for s in allocation.sessions]},
                )
                if mission.wait_reason:
                    Mission.objects.filter(pk=mission.pk).update(wait_reason="")
            elif live_now == 0:
                _set_wait(mission, allocation.wait_code, allocation.wait_reason)
    return requested


# --------------------------------------------------------------------------- counters


def release_slot(session: BrowserSession) -> None:
    """Give back the worker slot and proxy usage a session held (caller's transaction,
    after it flipped holds_slot with a conditional update)."""
    release_slots([session])


def release_slots(sessions: Iterable[BrowserSession]) -> None:
    """`release_slot` of many sessions: one UPDATE for their workers and one for their
    proxies, each row locked first in id order (as allocation locks them), so that
    batched releases and allocations never deadlock. A counter never goes below 0."""
    per_worker: dict[int, int] = defaultdict(int)
    per_proxy: dict[int, int] = defaultdict(int)
    for session in sessions:
        per_worker[session.worker_id] += 1
        if session.proxy_id:
            per_proxy[session.proxy_id] += 1
    for model, counts in ((Worker, per_worker), (Proxy, per_proxy)):
        if not counts:
            continue
        manager = model._default_manager
        rows = manager.filter(pk__in=list(counts), active_sessions__gt=0)
        if len(counts) > 1:
            ids = list(rows.order_by("id").select_for_update(of=("self",)).values_list("id"))
            if not ids:
                continue
        if len(counts) == 1:
            minus: Any = Value(next(iter(counts.values())))
        else:
            minus = Case(
                *(When(pk=pk, then=Value(n)) for pk, n in counts.items()),
                output_field=models.IntegerField(),
            )
        rows.update(active_sessions=Greatest(F("active_sessions") - minus, Value(0)))


def recompute_counters() -> dict[str, int]:
    """Recount worker slots and proxy usage from the sessions that hold them (rule 5).
    Returns how many rows were corrected."""
    fixed = {"workers": 0, "proxies": 0}
    with transaction.atomic():
        # Lock first (workers in id order, as allocation does), then count: a slot taken
        # or freed between a count and its write would otherwise be overwritten.
        workers = list(Worker.objects.select_for_update().order_by("id"))
        list(Proxy.objects.filter(active_sessions__gt=0).select_for_update().order_by("id"))
        held_w = dict(
            BrowserSession.objects.filter(holds_slot=True)
            .values_list("worker")
            .annotate(n=Count("id"))
            .order_by()
        )
        for worker in workers:
            want = held_w.get(worker.pk, 0)
            if worker.active_sessions != want:
                Worker.objects.filter(pk=worker.pk).update(active_sessions=want)
                fixed["workers"] += 1
        held_p = dict(
            BrowserSession.objects.filter(holds_slot=True, proxy__isnull=False)
            .values_list("proxy")
            .annotate(n=Count("id"))
            .order_by()
        )
        stale = Proxy.objects.filter(active_sessions__gt=0).exclude(pk__in=list(held_p))
        fixed["proxies"] += stale.update(active_sessions=0)
        for proxy_id, n in held_p.items():
            fixed["proxies"] += (
                Proxy.objects.filter(pk=proxy_id)
                .exclude(active_sessions=n)
                .update(active_sessions=n)
            )
    return fixed


def now_utc() -> dt.datetime:
    return timezone.now()
