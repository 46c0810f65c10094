"""Capacity: which due missions get sessions, on which worker slots and proxies.

Leases (claims, fences, releases) live in `orchestrator.leases`; mission transitions in
`orchestrator.transitions`. Rules (docs/engine.md): no database lock is ever held across an
HTTP call; worker slots and proxy usage are counted rows changed in the same
transaction as the sessions they belong to.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.db.models.functions import Now

from orchestrator import (
    domain_slots,
    eligibility,
    events,
    providers,
    proxy_health,
    site_breaker,
    states,
    untried,
    worker_capacity,
)
from orchestrator.eligibility import ProxyRule, sessions_wanted
from orchestrator.leases import (  # noqa: F401  (re-exported: callers and tests name them here)
    Lease,
    claim,
    fenced,
    lease_expiry,
    lease_free,
    reap_expired_leases,
    release,
)
from orchestrator.models import BrowserSession, Mission, MissionEvent, MissionItem
from orchestrator.slots import (  # noqa: F401  (re-exported: callers and tests name them here)
    free_slots,
    recompute_counters,
    release_slot,
    release_slots,
)
from orchestrator.states import ErrorCode, ItemStatus, MissionStatus, SessionStatus
from orchestrator.transitions import Move, transition_many
from registry import site_rules
from registry.config import Config
from registry.models import (
    HealthStatus,
    Proxy,
    ProxyStatus,
    SiteConfig,
    Worker,
    Writer,
    normalize_domain,
)

logger = logging.getLogger(__name__)

# Sessions that may take new jobs (opening or open, not closing).
SESSION_SERVING = (
    SessionStatus.REQUESTED,
    SessionStatus.CREATING,
    SessionStatus.READY,
    SessionStatus.BUSY,
)

# --------------------------------------------------------------------------- capacity


def usable_workers_q(now: dt.datetime) -> Q:
    return (
        Q(enabled=True, draining=False, active_sessions__lt=F("max_sessions"))
        & ~Q(health_status=HealthStatus.OFFLINE)
        & (Q(circuit_open_until__isnull=True) | Q(circuit_open_until__lte=now))
    )


def usable_proxies_q(site: SiteConfig, now: dt.datetime, exclude: Iterable[str] = ()) -> Q:
    """Proxies a session for `site` may lock now (`eligibility.refusal` as a filter)."""
    return eligibility.rule_q(ProxyRule.for_site(site, exclude), now)


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
        self.configs.update(SiteConfig.for_domains(wanted))


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

    Three steps: lock the candidates (database), `plan_sessions` (pure: which worker
    slot and proxy each session gets), create the sessions and count their slots.
    A few statements for the whole batch, not per mission: one locking read of the
    usable proxies per distinct proxy filter (site rules and blocked proxies), one
    count of their held slots, one INSERT of the sessions, one UPDATE per worker and
    one per distinct number of sessions a proxy got.

    `worker_pool` and `worker_slots` (from `lock_usable_workers` and `free_slots`) let a
    caller that allocates in several calls lock and count once; both are updated in
    place as slots are taken; `prefetched` holds what was read for the whole batch."""
    assert transaction.get_connection().in_atomic_block, "allocate inside a transaction"
    if not any(r.n > 0 for r in requests):
        return [Allocation([]) for _ in requests]
    if worker_pool is None:
        worker_pool = lock_usable_workers(now)
    if worker_slots is None:
        worker_slots = free_slots("worker", worker_capacity.slot_limits(worker_pool))
    paused, blocked = _paused_and_blocked(requests, now, prefetched)
    has_free_worker = any(
        w.active_sessions < w.max_sessions and worker_slots.get(w.pk) for w in worker_pool
    )
    candidates = _lock_candidate_proxies(requests, paused, blocked, now) if has_free_worker else {}
    proxies = {p.pk: p for group in candidates.values() for p in group}
    domain_caps = domain_slots.DomainSlots.reserve([r for r in requests if r.n > 0])
    allowed = [domain_caps.allowed(r.mission, r.n) if r.n > 0 else 0 for r in requests]
    plan = plan_sessions(
        [
            PlanRequest(
                n=allowed[i],
                paused=paused.get(r.mission.domain, ""),
                direct_ok=not r.site.proxy_types and not r.site.countries,
                candidates=candidates.get(i, []),
                site=r.site,
            )
            for i, r in enumerate(requests)
        ],
        worker_pool,
        worker_slots,
        {pk: p.max_sessions - p.active_sessions for pk, p in proxies.items()},
        free_slots("proxy", {pk: p.max_sessions for pk, p in proxies.items()}),
    )
    for worker in worker_pool:
        worker.active_sessions = plan.worker_active[worker.pk]
    for pk, left in plan.worker_slots.items():
        worker_slots[pk][:] = left
    results = [
        Allocation([], domain_slots.WAIT_CODE, domain_caps.wait_reason(r.mission))
        if r.n > 0 and not allowed[i]
        else Allocation([])
        for i, r in enumerate(requests)
    ]
    explained: dict[tuple[ProxyRule, str], str] = {}
    for i, (code, reason) in plan.waits.items():
        r = requests[i]
        if code == ErrorCode.ALLOC_NO_PROXY:
            rule = ProxyRule.for_site(r.site, avoid=r.exclude_proxies)
            key = (rule, r.mission.domain)
            if key not in explained:
                learned = blocked.get(r.mission.domain, [])
                explained[key] = no_proxy_reason(rule, r.site, r.mission.domain, now, learned)
            reason = explained[key]
        results[i] = Allocation([], code, reason)
    created = _create_sessions(requests, plan.chosen, now, prefetched, domain_caps)
    for i, sessions in created.items():
        results[i] = Allocation(sessions)
        events.publish("session.requested", mission_id=requests[i].mission.pk)
    return results


def _paused_and_blocked(
    requests: Sequence[Request], now: dt.datetime, prefetched: Prefetched | None
) -> tuple[dict[str, str], dict[str, list[str]]]:
    if prefetched is not None:
        return prefetched.paused, prefetched.blocked
    domains = {r.mission.domain for r in requests if r.n > 0}
    return (
        {d: site_breaker.paused_reason(d, now) for d in domains},
        {d: proxy_health.blocked_external_ids(d, now) for d in domains},
    )


def _lock_candidate_proxies(
    requests: Sequence[Request],
    paused: dict[str, str],
    blocked: dict[str, list[str]],
    now: dt.datetime,
) -> dict[int, list[Proxy]]:
    """Request index -> its usable proxies, least recently used first: one locking read
    per distinct proxy filter; a proxy that fits several filters is one object (its room
    is shared)."""
    groups: dict[ProxyRule, list[int]] = defaultdict(list)
    for i, r in enumerate(requests):
        if r.n <= 0 or paused[r.mission.domain]:
            continue
        rule = ProxyRule.for_site(r.site, blocked[r.mission.domain], avoid=r.exclude_proxies)
        groups[rule].append(i)
    proxy_by_pk: dict[int, Proxy] = {}
    candidates: dict[int, list[Proxy]] = {}
    for rule, members in groups.items():
        limit = sum(requests[i].n for i in members) * 2
        rows = list(
            Proxy.objects.filter(eligibility.rule_q(rule, now))
            .order_by(F("last_used_at").asc(nulls_first=True), "id")
            .select_for_update(skip_locked=True, of=("self",))[:limit]
        )
        shared = [proxy_by_pk.setdefault(p.pk, p) for p in rows]
        for i in members:
            candidates[i] = shared
    return candidates


@dataclass(frozen=True)
class PlanRequest:
    """One mission's request as `plan_sessions` sees it: how many sessions, why its
    domain is paused ("" if not), whether it may go without a proxy, and its usable
    proxies (least recently used first)."""

    n: int
    paused: str = ""
    direct_ok: bool = True
    candidates: Sequence[Proxy] = ()
    site: SiteConfig | None = None  # its providers (`orchestrator.providers`); None: any


@dataclass(frozen=True)
class Slot:
    worker: Worker
    worker_slot: int
    proxy: Proxy | None
    proxy_slot: int | None


@dataclass
class Plan:
    """What `plan_sessions` decided: the slots each request got, why the others wait
    (`ALLOC_NO_PROXY` comes without its reason: the caller explains it), and the
    workers' counters and free slot numbers afterwards."""

    chosen: dict[int, list[Slot]]
    waits: dict[int, tuple[str, str]]
    worker_active: dict[int, int]
    worker_slots: dict[int, list[int]]


def plan_sessions(
    requests: Sequence[PlanRequest],
    workers: Sequence[Worker],
    worker_slots: dict[int, list[int]],
    proxy_room: dict[int, int],
    proxy_slots: dict[int, list[int]],
) -> Plan:
    """Which worker slot and proxy each requested session gets (pure: reads the rows'
    counters, changes nothing). Requests are served in order; each session goes to the
    worker with the most free slots (ties: lowest id) and the least used fitting proxy
    of this batch (candidates come least recently used first); a request that needs a
    proxy and finds none waits with `ALLOC_NO_PROXY`."""
    active = {w.pk: w.active_sessions for w in workers}
    free = {pk: list(slots) for pk, slots in worker_slots.items()}
    room, pslots = dict(proxy_room), {pk: list(v) for pk, v in proxy_slots.items()}
    used_here = dict.fromkeys(room, 0)
    plan = Plan({}, {}, active, free)

    def open_workers() -> list[Worker]:
        return [w for w in workers if active[w.pk] < w.max_sessions and free.get(w.pk)]

    for i, r in enumerate(requests):
        if r.n <= 0:
            continue
        if not open_workers():
            plan.waits[i] = _no_worker(workers, active)
            continue
        if r.paused:
            plan.waits[i] = (site_breaker.WAIT_CODE, r.paused)
            continue
        if r.site is not None and not providers.fitting(open_workers(), r.site):
            plan.waits[i] = providers.shortfall(r.site, workers)
            continue
        slots: list[Slot] = []
        for _ in range(r.n):
            choices = open_workers()
            if r.site is not None:
                choices = providers.fitting(choices, r.site)
            if not choices:
                break
            worker = max(choices, key=lambda w: (w.max_sessions - active[w.pk], -w.pk))
            # A proxy with room for several sessions is reused only when every other
            # fitting proxy is already used by this batch.
            fitting = [p for p in r.candidates if room[p.pk] > 0 and pslots[p.pk]]
            proxy = min(fitting, key=lambda p: used_here[p.pk]) if fitting else None
            if proxy is None and not r.direct_ok:
                break
            proxy_slot = None
            if proxy is not None:
                room[proxy.pk] -= 1
                used_here[proxy.pk] += 1
                proxy_slot = pslots[proxy.pk].pop(0)
            active[worker.pk] += 1
            slots.append(Slot(worker, free[worker.pk].pop(0), proxy, proxy_slot))
        if slots:
            plan.chosen[i] = slots
        else:
            plan.waits[i] = (ErrorCode.ALLOC_NO_PROXY, "")
    return plan


def _no_worker(workers: Sequence[Worker], active: dict[int, int]) -> tuple[str, str]:
    if not workers:
        return ErrorCode.ALLOC_NO_WORKER, "nenhum worker disponível"
    used, total = sum(active[w.pk] for w in workers), sum(w.max_sessions for w in workers)
    return ErrorCode.ALLOC_NO_CAPACITY, f"workers sem capacidade ({used}/{total})"


def _create_sessions(
    requests: Sequence[Request],
    chosen: dict[int, list[Slot]],
    now: dt.datetime,
    prefetched: Prefetched | None,
    domain_caps: domain_slots.DomainSlots,
) -> dict[int, list[BrowserSession]]:
    """Insert the planned sessions (one INSERT) and count the slots they took."""
    if not chosen:
        return {}
    missions = [requests[i].mission.pk for i in chosen]
    if prefetched is not None:
        bases = {pk: prefetched.sessions.get(pk, 0) for pk in missions}
    else:
        bases = dict(
            BrowserSession.objects.filter(mission__in=missions)
            .values_list("mission")
            .annotate(n=Count("id"))
            .order_by()
        )
    created = {
        i: [
            _new_session(
                requests[i],
                bases.get(requests[i].mission.pk, 0) + k + 1,
                slot,
                domain_caps.take(requests[i].mission),
            )
            for k, slot in enumerate(slots)
        ]
        for i, slots in chosen.items()
    }
    BrowserSession.objects.bulk_create([s for group in created.values() for s in group])
    _count_taken_slots([slot for slots in chosen.values() for slot in slots], now)
    return created


def _new_session(r: Request, n: int, slot: Slot, domain_slot: int | None) -> BrowserSession:
    mission, proxy = r.mission, slot.proxy
    return BrowserSession(
        mission=mission,
        worker=slot.worker,
        proxy=proxy,
        attempt=mission.attempt,
        session_key=f"m{mission.pk}-a{mission.attempt}-s{n}",
        status=SessionStatus.REQUESTED,
        provider=providers.pick(slot.worker, r.site),
        engine=r.site.engine,
        proxy_external_id=proxy.external_id if proxy else "",
        proxy_type=proxy.type if proxy else "",
        proxy_country=eligibility.session_country(proxy.type, proxy.country, r.site)
        if proxy
        else "",
        holds_slot=True,
        worker_slot=slot.worker_slot,
        proxy_slot=slot.proxy_slot,
        domain=normalize_domain(mission.domain),
        domain_slot=domain_slot,
    )


def _count_taken_slots(slots: list[Slot], now: dt.datetime) -> None:
    per_worker: dict[int, int] = defaultdict(int)
    per_proxy: dict[int, int] = defaultdict(int)
    for slot in slots:
        per_worker[slot.worker.pk] += 1
        if slot.proxy is not None:
            per_proxy[slot.proxy.pk] += 1
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


def lock_usable_workers(now: dt.datetime) -> list[Worker]:
    """Lock the usable workers in id order (no skip: few rows, short transactions, and a
    fixed order so that concurrent allocators never deadlock)."""
    return list(
        Worker.objects.filter(usable_workers_q(now)).order_by("id").select_for_update(of=("self",))
    )


def no_proxy_reason(
    rule: ProxyRule,
    site: SiteConfig,
    domain: str,
    now: dt.datetime,
    learned: Iterable[str] = (),
) -> str:
    """Plain words on why no proxy fits, for the mission's wait reason: the proxies of
    the rule's kind counted per cause by `eligibility.tally` (the explainer's count).
    `learned`: external ids the proxy x site health blocks for `domain`."""
    rows = eligibility.proxy_facts(eligibility.kind_q(rule))
    learned = set(learned)
    health = [p.id for p in rows if p.external_id in learned]
    counted = eligibility.tally(rule, rows, now, health)
    kinds = "/".join(site.proxy_types or ()) or "qualquer tipo"
    where = "/".join(site.countries or ()) or "qualquer país"
    if not counted.total:
        return f"nenhum proxy {kinds} {where} cadastrado"
    parts = [f"{counted.total} proxies {kinds} {where}"]
    detail = eligibility.refusal_words(counted.causes, counted.total, normalize_domain(domain))
    return "nenhum proxy livre: " + ", ".join([*parts, detail] if detail else parts)


# --------------------------------------------------------------------------- missions


def _pending_exists() -> Exists:
    return Exists(MissionItem.objects.filter(mission=OuterRef("pk"), status=ItemStatus.PENDING))


def default_writer_id() -> int | None:
    return Writer.default_q().values_list("id", flat=True).first()


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
        worker_slots = free_slots("worker", worker_capacity.slot_limits(workers))
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
                    data={
                        "sessions": [s.session_key for s in allocation.sessions],
                        "site_rule": site_rules.rule_of(request.site),
                    },
                    fields={"wait_reason": "", "session_rotations": 0},
                )
            )
            outcomes.append((mission, allocation))
        # Every claimed mission is still locked here, so each compare-and-set wins.
        transition_many(moves, MissionStatus.ATRIBUIDO, now=now)
    return outcomes


def _serving_proxies(mission: Mission) -> set[str]:
    """The proxies of the sessions that may take the mission's new jobs."""
    return set(
        BrowserSession.objects.filter(
            mission=mission,
            attempt=mission.attempt,
            status__in=SESSION_SERVING,
            retire_reason="",
        ).values_list("proxy_external_id", flat=True)
    )


def _set_wait(mission: Mission, code: str, reason: str) -> None:
    text = f"{code}: {reason}" if reason else code
    if mission.wait_reason != text:
        Mission.objects.filter(pk=mission.pk).update(wait_reason=text[:500])
        mission.wait_reason = text[:500]


def replenish_sessions(owner: str, now: dt.datetime, cfg: Config, limit: int = 50) -> int:
    """Open sessions for running missions that have pending items and fewer live
    sessions than they may use: replacements after failures, within the rotation
    budget. Returns how many sessions were requested."""
    # Sessions that may still take new jobs: not closing, not marked for retirement
    # (a busy session whose proxy got blocked is replaced at once: issue #15 case 4).
    live = (
        Q(sessions__status__in=SESSION_SERVING)
        & Q(sessions__attempt=F("attempt"))
        & Q(sessions__retire_reason="")
    )
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
                mission=mission,
                attempt=mission.attempt,
                status__in=SESSION_SERVING,
                retire_reason="",
            ).count()
            wanted = sessions_wanted(site, pending) - live_now
            if pending == 0:
                continue
            # Items that failed on every serving session's proxy get one more session,
            # on a proxy they have not tried, if the site allows it (issue #15 case 4).
            stuck = None
            if wanted <= 0 and live_now < site.max_sessions:
                stuck = untried.first_stuck(mission.pk, _serving_proxies(mission))
                wanted = 1 if stuck is not None else 0
            if wanted <= 0:
                continue
            # A session on a proxy every pending item already failed on is useless
            # while another fitting proxy exists (the dispatcher retires such sessions).
            useless = untried.avoid_for_new_sessions(mission.pk, site, domain, now)
            # Proxies that failed this mission's sessions in this attempt rest elsewhere.
            # So do the proxies of the sessions being retired.
            failed_proxies = set(
                BrowserSession.objects.filter(
                    Q(
                        status__in=[
                            SessionStatus.FAILED,
                            SessionStatus.STUCK,
                            SessionStatus.DISCONNECTED,
                        ]
                    )
                    | Q(status__in=states.SESSION_LIVE, retire_reason__gt=""),
                    mission=mission,
                    attempt=mission.attempt,
                )
                .exclude(proxy_external_id="")
                .values_list("proxy_external_id", flat=True)
            )
            if stuck is not None:
                allocation = allocate_sessions(
                    mission, wanted, site, now, exclude_proxies=stuck | failed_proxies
                )
                if not allocation.sessions:
                    continue  # the items wait for a proxy they have not tried
            else:
                allocation = allocate_sessions(
                    mission, wanted, site, now, exclude_proxies=failed_proxies | useless
                )
            if not allocation.sessions and failed_proxies - useless and stuck is None:
                # Better a proxy that failed before than none at all.
                allocation = allocate_sessions(mission, wanted, site, now, exclude_proxies=useless)
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
