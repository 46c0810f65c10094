"""The domain cap: `SiteConfig.max_concurrent_sessions` live sessions on one domain,
across every mission, worker and orchestrator process.

The same technique as worker and proxy slots (allocation.py): each session that holds
a slot carries its domain and a slot number below the cap, a partial unique index on
(domain, domain_slot) is the database's backstop, and allocators serialize per domain
(a transaction-scoped advisory lock on PostgreSQL, taken after the worker rows and in
domain order, so allocators never deadlock; SQLite's IMMEDIATE transactions already
serialize). Slots are counted from the sessions themselves, never from a counter.

A domain's free slots are shared between its missions by priority, then age
(`fair_targets`, pure): each contender (a mission holding slots, asking for sessions or
queued for the domain) is raised one session at a time in that order up to what it
wants, so a big mission cannot starve a small one.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from django.db import connection
from django.db.models import Q
from django.db.models.functions import Now

from orchestrator.models import BrowserSession, Mission
from orchestrator.states import MissionStatus
from registry import site_rules
from registry.models import SiteConfig, normalize_domain


class Request(Protocol):
    """What a batch asks for (`allocation.Request` has this shape)."""

    mission: Mission
    n: int
    site: SiteConfig


WAIT_CODE = "ALLOC_DOMAIN_CAP"


@dataclass(frozen=True)
class Contender:
    mission_id: int
    priority: int
    held: int  # slots it holds on the domain now
    want: int  # more sessions it asks for now


def fair_targets(cap: int, contenders: Iterable[Contender]) -> dict[int, int]:
    """How many of `cap` slots each contender should hold: one at a time, in order of
    priority (highest first) then age (lowest id first), up to held + want each."""
    order = sorted(contenders, key=lambda c: (-c.priority, c.mission_id))
    target = {c.mission_id: 0 for c in order}
    left = cap
    while left > 0:
        raised = False
        for c in order:
            if left and target[c.mission_id] < c.held + c.want:
                target[c.mission_id] += 1
                left -= 1
                raised = True
        if not raised:
            break
    return target


def grants(cap: int, contenders: Sequence[Contender]) -> dict[int, int]:
    """New sessions each contender may open now: up to its fair target, within the free
    slots (sessions above a target are not taken away; they end on their own)."""
    target = fair_targets(cap, contenders)
    free = max(0, cap - sum(c.held for c in contenders))
    out: dict[int, int] = {}
    for c in sorted(contenders, key=lambda c: (-c.priority, c.mission_id)):
        out[c.mission_id] = min(c.want, max(0, target[c.mission_id] - c.held), free)
        free -= out[c.mission_id]
    return out


def usage_words(cap: int, held: int) -> str:
    """pt-BR: "4 de 4 sessões em uso", "1 de 1 sessão em uso"."""
    return f"{held} de {cap} {'sessão' if cap == 1 else 'sessões'} em uso"


def wait_words(cap: int, held: int, missions: int) -> str:
    """pt-BR: "aguardando: limite do domínio, 4 de 4 sessões em uso por 2 missões"
    ("1 de 1 sessão em uso por 1 missão")."""
    noun = "missão" if missions == 1 else "missões"
    return f"aguardando: limite do domínio, {usage_words(cap, held)} por {missions} {noun}"


def lock_domains(domains: Iterable[str]) -> None:
    """Serialize allocators per domain until the transaction ends (PostgreSQL)."""
    if connection.vendor != "postgresql":
        return
    keys = sorted({_lock_key(d) for d in domains})
    with connection.cursor() as cursor:
        for key in keys:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _lock_key(domain: str) -> int:
    digest = hashlib.blake2b(f"domain-slot:{domain}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def held_by_domain(domains: Iterable[str]) -> dict[str, list[tuple[int, int | None, int]]]:
    """(mission id, slot number, mission priority) of every session holding a slot on
    each domain."""
    out: dict[str, list[tuple[int, int | None, int]]] = defaultdict(list)
    rows = BrowserSession.objects.filter(holds_slot=True, domain__in=list(domains)).values_list(
        "domain", "mission_id", "domain_slot", "mission__priority"
    )
    for domain, mission_id, slot, priority in rows:
        out[domain].append((mission_id, slot, priority))
    return out


@dataclass
class DomainSlots:
    """The capped domains of one allocation batch: what each mission may take."""

    caps: dict[str, int] = field(default_factory=dict)
    free: dict[str, list[int]] = field(default_factory=dict)
    held: dict[str, Counter[int]] = field(default_factory=dict)
    room: dict[int, int] = field(default_factory=dict)  # mission id -> sessions allowed

    @classmethod
    def reserve(cls, requests: Sequence[Request]) -> DomainSlots:
        """Lock the capped domains of `requests` and share their free slots (caller's
        transaction, after the workers are locked)."""
        caps: dict[str, int] = {}
        for r in requests:
            cap = cap_of(r.site)
            if cap:
                caps[normalize_domain(r.mission.domain)] = cap
        slots = cls(caps=caps)
        if not caps:
            return slots
        lock_domains(caps)
        held = held_by_domain(caps)
        queued = _queued_missions(caps, {r.mission.pk for r in requests})
        for domain, cap in caps.items():
            numbers = {s for _, s, _ in held[domain] if s is not None}
            count = Counter(m for m, _, _ in held[domain])
            priority = {m: p for m, _, p in held[domain]}
            slots.held[domain] = count
            room = max(0, cap - len(held[domain]))
            slots.free[domain] = [s for s in range(cap) if s not in numbers][:room]
            contenders = {m: Contender(m, p, count.get(m, 0), 1) for m, p in queued.get(domain, [])}
            for m, n in count.items():
                contenders.setdefault(m, Contender(m, priority[m], n, 0))
            for r in requests:
                if normalize_domain(r.mission.domain) == domain and r.n > 0:
                    m = r.mission.pk
                    contenders[m] = Contender(m, r.mission.priority, count.get(m, 0), r.n)
            given = grants(cap, list(contenders.values()))
            for r in requests:
                if normalize_domain(r.mission.domain) == domain:
                    slots.room[r.mission.pk] = given.get(r.mission.pk, 0)
        return slots

    def allowed(self, mission: Mission, n: int) -> int:
        """Sessions `mission` may open now out of the `n` it asks for."""
        if normalize_domain(mission.domain) not in self.caps:
            return n
        return min(n, self.room.get(mission.pk, 0))

    def take(self, mission: Mission) -> int | None:
        """The domain slot number of one new session of `mission` (None: no cap)."""
        domain = normalize_domain(mission.domain)
        if domain not in self.caps:
            return None
        self.room[mission.pk] -= 1
        return self.free[domain].pop(0)

    def wait_reason(self, mission: Mission) -> str:
        domain = normalize_domain(mission.domain)
        count = self.held.get(domain, Counter())
        return wait_words(self.caps[domain], sum(count.values()), len(count))


def _queued_missions(domains: Iterable[str], exclude: set[int]) -> dict[str, list[tuple[int, int]]]:
    """Due QUEUED missions of `domains` (not in this batch): they compete for a share."""
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    rows = (
        Mission.objects.filter(status=MissionStatus.QUEUED, domain__in=list(domains))
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=Now()))
        .exclude(pk__in=exclude)
        .values_list("domain", "id", "priority")
    )
    for domain, mission_id, priority in rows:
        out[domain].append((mission_id, priority))
    return out


def usage(domains: Iterable[str]) -> dict[str, tuple[int, int]]:
    """(sessions holding a slot, distinct missions) per domain, read only."""
    out: dict[str, tuple[int, int]] = {}
    for domain, rows in held_by_domain(domains).items():
        out[domain] = (len(rows), len({m for m, _, _ in rows}))
    return out


def cap_of(site: SiteConfig) -> int | None:
    """The domain's cap: `max_concurrent_sessions`, or the one a per-minute budget
    implies (`site_rules.domain_cap`)."""
    return site_rules.domain_cap(site)


@dataclass(frozen=True)
class DomainLoad:
    """One row of the dashboard's per-domain view."""

    domain: str
    rule: str
    live: int
    missions: int
    cap: int | None
    delay_ms: int
    min_delay_ms: int
    max_requests_per_minute: int | None
    respect_robots: bool
    breaker: str  # pt-BR state of the site breaker

    @property
    def full(self) -> bool:
        return self.cap is not None and self.live >= self.cap


def overview(limit: int = 50) -> list[DomainLoad]:
    """Domains with sessions holding slots, and domains with a cap of their own: live
    sessions against the cap, pace, robots and breaker state (read only)."""
    from orchestrator.models import DomainBreaker

    rows = (
        BrowserSession.objects.filter(holds_slot=True)
        .exclude(domain="")
        .values_list("domain", "mission_id")
    )
    live: Counter[str] = Counter()
    missions: dict[str, set[int]] = defaultdict(set)
    for domain, mission_id in rows:
        live[domain] += 1
        missions[domain].add(mission_id)
    capped = SiteConfig.objects.filter(
        Q(max_concurrent_sessions__isnull=False) | Q(max_requests_per_minute__isnull=False)
    ).exclude(domain="*")
    domains = sorted(set(live) | set(capped.values_list("domain", flat=True)))[:limit]
    sites = SiteConfig.for_domains(domains)
    breakers = {
        b.domain: str(b.get_state_display())
        for b in DomainBreaker.objects.filter(domain__in=domains)
    }
    out = []
    for domain in domains:
        site = sites[domain]
        out.append(
            DomainLoad(
                domain=domain,
                rule=site_rules.describe(site),
                live=live.get(domain, 0),
                missions=len(missions.get(domain, ())),
                cap=cap_of(site),
                delay_ms=int(site_rules.job_options(site)["delay_ms"]),
                min_delay_ms=site.min_delay_ms or 0,
                max_requests_per_minute=site.max_requests_per_minute,
                respect_robots=site.respect_robots is not False,
                breaker=breakers.get(domain, "Normal"),
            )
        )
    return out
