"""Why is this waiting? Plain words on every constraint that keeps a mission (or a
hypothetical one, for a dry run) from getting sessions.

Read only: nothing here claims, locks or writes. The allocator (`allocation.py`) and
the distributor decide; this module re-asks their questions against the current rows
and answers per group of blocked items (one group per domain of the pending items),
e.g. "nenhuma sessão com proxy residencial BR: 3 de 5 proxies bloqueados para
example.com, 2 em cooldown; workers sem capacidade (8/8)".

Every answer is built from a few aggregate queries that an `Explainer` caches for
one request, so explaining a page of missions costs the same as explaining one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from orchestrator import distributor, domain_slots, eligibility, providers, site_breaker, states
from orchestrator.models import (
    BrowserSession,
    DomainBreaker,
    Mission,
    MissionItem,
    ProxyDomainHealth,
)
from orchestrator.states import ItemStatus, MissionStatus
from registry import config, site_rules
from registry.config import Config
from registry.models import (
    HealthStatus,
    ProxyType,
    SiteConfig,
    Worker,
    Writer,
    normalize_domain,
)

# Pending URLs read to split a mission's items by domain (the rest is counted as is).
MAX_ITEMS_SCANNED = 20_000


@dataclass(frozen=True)
class Constraint:
    """One requirement: `ok` says whether it holds now; `message` says it in pt-BR."""

    code: str
    ok: bool
    message: str


@dataclass
class Group:
    domain: str
    site: str  # the SiteConfig that applies ("*" for the default)
    pending_items: int
    constraints: list[Constraint] = field(default_factory=list)

    @property
    def failed(self) -> list[Constraint]:
        return [c for c in self.constraints if not c.ok]


@dataclass
class Explanation:
    mission_id: int | None
    status: str
    waiting: bool
    summary: str
    constraints: list[Constraint] = field(default_factory=list)  # mission-wide
    groups: list[Group] = field(default_factory=list)
    sessions_possible: int = 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for group, raw in zip(self.groups, data["groups"], strict=True):
            raw["failed"] = [asdict(c) for c in group.failed]
        data["failed"] = [asdict(c) for c in self.constraints if not c.ok]
        return data


def _type_label(value: str) -> str:
    try:
        return str(ProxyType(value).label).lower()
    except ValueError:
        return value


def _proxy_words(site: SiteConfig) -> str:
    kinds = "/".join(_type_label(t) for t in site.proxy_types or ())
    geo = "/".join(c.upper() for c in site.countries or ())
    return " ".join(p for p in ("proxy", kinds, geo) if p)


class Explainer:
    """Answers for one request; caches what many missions share."""

    def __init__(self, now: dt.datetime | None = None, cfg: Config | None = None) -> None:
        self.now = now or timezone.now()
        self.cfg = cfg or config.load()
        self._workers: Constraint | None = None
        self._free_slots = 0
        self._sites: dict[str, SiteConfig] = {}
        self._writers: dict[int | None, Constraint] = {}
        self._health_blocked: dict[str, set[int]] = {}
        self._proxy_cache: list[eligibility.Facts] | None = None
        self._paused: dict[str, str] = {}
        self._domain_usage: dict[str, tuple[int, int]] = {}
        self._proxy_answers: dict[tuple[Any, ...], tuple[Constraint, int]] = {}

    # ------------------------------------------------------------------ pieces

    def site(self, domain: str) -> SiteConfig:
        key = normalize_domain(domain)
        if key not in self._sites:
            self._sites[key] = SiteConfig.for_domain(key)
        return self._sites[key]

    def workers(self) -> Constraint:
        if self._workers is not None:
            return self._workers
        now = self.now
        circuit_open = Q(circuit_open_until__gt=now)
        counts = Worker.objects.aggregate(
            n_total=Count("id"),
            n_disabled=Count("id", filter=Q(enabled=False)),
            n_draining=Count("id", filter=Q(enabled=True, draining=True)),
            n_offline=Count(
                "id",
                filter=Q(enabled=True, draining=False)
                & (Q(health_status=HealthStatus.OFFLINE) | circuit_open),
            ),
        )
        usable = list(
            Worker.objects.filter(enabled=True, draining=False)
            .exclude(health_status=HealthStatus.OFFLINE)
            .exclude(circuit_open)
            .values_list("max_sessions", "active_sessions")
        )
        total = sum(m for m, _ in usable)
        used = sum(min(a, m) for m, a in usable)
        self._free_slots = total - used
        if not counts["n_total"]:
            result = Constraint("workers", False, "nenhum worker cadastrado")
        elif not usable:
            parts = []
            if counts["n_offline"]:
                parts.append(f"{counts['n_offline']} offline")
            if counts["n_draining"]:
                parts.append(f"{counts['n_draining']} drenando")
            if counts["n_disabled"]:
                parts.append(f"{counts['n_disabled']} desativados")
            result = Constraint(
                "workers", False, "nenhum worker disponível (" + ", ".join(parts) + ")"
            )
        elif self._free_slots <= 0:
            result = Constraint("workers", False, f"workers sem capacidade ({used}/{total})")
        else:
            result = Constraint(
                "workers", True, f"{self._free_slots} vagas livres em workers ({used}/{total})"
            )
        self._workers = result
        return result

    def free_slots(self) -> int:
        self.workers()
        return self._free_slots

    def writer(self, writer_id: int | None) -> Constraint:
        if writer_id in self._writers:
            return self._writers[writer_id]
        writer = (
            Writer.objects.filter(pk=writer_id, enabled=True).first()
            if writer_id
            else Writer.default()
        )
        if writer is None:
            result = Constraint("writer", False, "nenhum writer configurado")
        elif writer.health_status == HealthStatus.OFFLINE or writer.circuit_open(self.now):
            result = Constraint("writer", False, f"writer {writer.name} offline")
        else:
            result = Constraint("writer", True, f"writer {writer.name} disponível")
        self._writers[writer_id] = result
        return result

    def prefetch(self, domains: Iterable[str]) -> None:
        """Load the site configs and learned blocks of many domains in two queries."""
        wanted = {normalize_domain(d) for d in domains} - set(self._sites)
        if not wanted:
            return
        self._sites.update(SiteConfig.for_domains(wanted))
        for d in wanted:
            self._health_blocked.setdefault(d, set())
        for d in wanted:
            self._paused[d] = ""
        for row in DomainBreaker.objects.filter(
            domain__in=wanted, state=DomainBreaker.State.OPEN, paused_until__gt=self.now
        ):
            self._paused[row.domain] = site_breaker.paused_reason(row.domain, self.now)
        for proxy_id, d in ProxyDomainHealth.objects.filter(
            domain__in=wanted, blocked_until__gt=self.now
        ).values_list("proxy_id", "domain"):
            self._health_blocked[d].add(proxy_id)

    def domain_cap(self, site: SiteConfig, domain: str) -> tuple[Constraint | None, int]:
        """The domain-wide cap (`max_concurrent_sessions`, or the one a per-minute
        budget implies) and the room it leaves."""
        cap = domain_slots.cap_of(site)
        if not cap:
            return None, 10**6
        key = normalize_domain(domain)
        if key not in self._domain_usage:
            self._domain_usage[key] = domain_slots.usage([key]).get(key, (0, 0))
        held, missions = self._domain_usage[key]
        rule = site_rules.describe(site)
        if held >= cap:
            words = f"{domain_slots.wait_words(cap, held, missions)} ({rule})"
            return Constraint("domain_cap", False, words), 0
        words = f"limite do domínio: {domain_slots.usage_words(cap, held)} ({rule})"
        return Constraint("domain_cap", True, words), cap - held

    def paused(self, domain: str) -> str:
        """Why the per-site breaker keeps new sessions off `domain` ("" if it does not)."""
        key = normalize_domain(domain)
        if key not in self._paused:
            self._paused[key] = site_breaker.paused_reason(key, self.now)
        return self._paused[key]

    def health_blocked(self, domain: str) -> set[int]:
        """Proxies the learned proxy x site health blocks for `domain` right now."""
        key = normalize_domain(domain)
        if key not in self._health_blocked:
            self._health_blocked[key] = set(
                ProxyDomainHealth.objects.filter(
                    domain=key, blocked_until__gt=self.now
                ).values_list("proxy_id", flat=True)
            )
        return self._health_blocked[key]

    def _proxy_rows(self) -> list[eligibility.Facts]:
        if self._proxy_cache is None:
            self._proxy_cache = eligibility.proxy_facts()
        return self._proxy_cache

    def proxies(
        self, site: SiteConfig, domain: str, exclude: Iterable[str] = ()
    ) -> tuple[Constraint, int]:
        """Whether any proxy fits `site` for `domain`, and how many sessions they allow
        (`eligibility.tally`: the allocator's rule, counted per cause)."""
        d = normalize_domain(domain)
        key = (
            tuple(sorted(site.proxy_types or ())),
            tuple(sorted(site.countries or ())),
            tuple(sorted(site.blocked_proxies or ())),
            bool(getattr(site, "require_verified_geo", False)),
            d,
            frozenset(exclude),
        )
        if key not in self._proxy_answers:
            self._proxy_answers[key] = self._count_proxies(site, d, key[5])
        return self._proxy_answers[key]

    def _count_proxies(
        self, site: SiteConfig, d: str, exclude: frozenset[str]
    ) -> tuple[Constraint, int]:
        rule = eligibility.ProxyRule.for_site(site, avoid=exclude)
        counted = eligibility.tally(rule, self._proxy_rows(), self.now, self.health_blocked(d))
        total, room = counted.total, counted.room
        words = _proxy_words(site)
        if rule.any_proxy:
            return Constraint("proxies", True, "conexão direta permitida (qualquer proxy)"), 10**6
        if not total:
            return Constraint("proxies", False, f"nenhum {words} cadastrado"), 0
        if room <= 0:
            detail = eligibility.refusal_words(counted.causes, total, d)
            return Constraint("proxies", False, f"nenhuma sessão com {words}: {detail}"), 0
        return Constraint("proxies", True, f"{room} vagas em {words} para {d}"), room

    # ------------------------------------------------------------------ answers

    def group(
        self, domain: str, pending: int, *, live_sessions: int = 0, exclude: Iterable[str] = ()
    ) -> tuple[Group, int]:
        """Constraints of one group of `pending` items of `domain`; and how many new
        sessions it could get now."""
        site = self.site(domain)
        group = Group(domain=normalize_domain(domain), site=site.domain, pending_items=pending)
        wanted = eligibility.sessions_wanted(site, pending)
        wanted -= live_sessions
        if wanted <= 0:
            group.constraints.append(
                Constraint(
                    "sessions",
                    True,
                    f"{live_sessions} sessões ativas (máximo {site.max_sessions} para {site.domain})",
                )
            )
            return group, 0
        workers = self.workers()
        proxies, room = self.proxies(site, domain, exclude)
        group.constraints += [workers, proxies]
        no_provider = providers.unavailable_reason(site)
        if no_provider:
            group.constraints.append(Constraint("provider", False, no_provider))
        paused = self.paused(domain)
        if paused:
            group.constraints.append(Constraint("site_breaker", False, paused))
        cap, cap_room = self.domain_cap(site, domain)
        if cap is not None:
            group.constraints.append(cap)
        ok = workers.ok and proxies.ok and not paused and cap_room > 0 and not no_provider
        possible = min(wanted, self.free_slots(), room, cap_room) if ok else 0
        return group, possible

    def mission(self, mission: Mission) -> Explanation:
        now = self.now
        status = mission.status
        exp = Explanation(mission.pk, status, waiting=False, summary="")
        if status in states.TERMINAL:
            exp.summary = f"missão {MissionStatus(status).label.lower()}: não espera nada"
            return exp
        if status == MissionStatus.ARMAZENANDO:
            writer = self.writer(mission.writer_id)
            exp.constraints.append(writer)
            exp.waiting = not writer.ok or bool(mission.wait_reason)
            exp.summary = (
                writer.message if not writer.ok else mission.wait_reason or "gravando os registros"
            )
            return exp

        mission_wide: list[Constraint] = []
        if self.cfg.paused:
            mission_wide.append(Constraint("paused", False, "orquestrador pausado"))
        if status == MissionStatus.QUEUED:
            if mission.next_attempt_at and mission.next_attempt_at > now:
                when = timezone.localtime(mission.next_attempt_at).strftime("%d/%m %H:%M:%S")
                mission_wide.append(
                    Constraint(
                        "backoff",
                        False,
                        f"aguardando a tentativa {mission.attempt} (backoff até {when})",
                    )
                )
            mission_wide.append(self.writer(mission.writer_id))
        else:
            if mission.session_rotations > self.cfg.max_session_rotations:
                mission_wide.append(
                    Constraint(
                        "rotations",
                        False,
                        f"rotações de sessão esgotadas ({mission.session_rotations}/"
                        f"{self.cfg.max_session_rotations})",
                    )
                )
        exp.constraints = mission_wide

        queued = status == MissionStatus.QUEUED
        if queued:
            # Allocation takes the strategy of the mission's own domain for all its items.
            by_domain = {
                mission.domain: MissionItem.objects.filter(
                    mission=mission, status=ItemStatus.PENDING
                ).count()
            }
        else:
            by_domain = _pending_by_domain(mission)
        live = [] if queued else _live_sessions(mission)
        exclude = set() if queued else _failed_proxies(mission)
        unassigned = _unassigned_reasons(mission, live) if live else {}
        total_possible = 0
        for domain, pending in by_domain.items():
            group, possible = self.group(domain, pending, live_sessions=len(live), exclude=exclude)
            reasons = unassigned.get(normalize_domain(domain))
            if reasons:
                group.constraints.append(
                    Constraint("distribution", False, _reason_words(reasons, group.domain))
                )
            total_possible += possible
            exp.groups.append(group)
        exp.sessions_possible = total_possible

        failed = [c for c in mission_wide if not c.ok]
        group_failed = [(g, g.failed) for g in exp.groups if g.failed]
        exp.waiting = status == MissionStatus.QUEUED or bool(failed or group_failed)
        if status != MissionStatus.QUEUED and not (failed or group_failed):
            exp.waiting = bool(mission.wait_reason)
        exp.summary = _summary(failed, group_failed, multi=len(exp.groups) > 1)
        if not exp.summary:
            if status == MissionStatus.QUEUED:
                ahead = (
                    Mission.objects.filter(status=MissionStatus.QUEUED)
                    .filter(
                        Q(priority__gt=mission.priority)
                        | Q(priority=mission.priority, pk__lt=mission.pk)
                    )
                    .count()
                )
                exp.summary = (
                    f"pronta para alocar ({total_possible} sessões possíveis"
                    + (f", {ahead} missões à frente na fila" if ahead else "")
                    + "); aguarda o próximo ciclo do gerenciador"
                )
            else:
                exp.summary = mission.wait_reason or "em andamento"
        return exp

    def hypothetical(
        self,
        *,
        domain: str,
        url_count: int,
        site: SiteConfig | None = None,
        writer_id: int | None = None,
    ) -> Explanation:
        """A dry run: what would a new mission of `url_count` URLs of `domain` get now?"""
        if site is not None:
            self._sites[normalize_domain(domain)] = site
        exp = Explanation(None, "DRY_RUN", waiting=False, summary="")
        if self.cfg.paused:
            exp.constraints.append(Constraint("paused", False, "orquestrador pausado"))
        exp.constraints.append(self.writer(writer_id))
        group, possible = self.group(domain, url_count)
        exp.groups.append(group)
        exp.sessions_possible = possible
        failed = [c for c in exp.constraints if not c.ok]
        group_failed = [(group, group.failed)] if group.failed else []
        exp.waiting = bool(failed or group_failed)
        exp.summary = _summary(failed, group_failed, multi=False) or (
            f"seria alocada agora com {possible} sessões"
        )
        return exp

    def summaries(self, missions: Sequence[Mission]) -> dict[int, str]:
        """One line per waiting mission (missions list tooltips): same constraints
        as `mission()`, on the mission's own domain, a few queries for the page."""
        waiting = [
            m
            for m in missions
            if m.status == MissionStatus.QUEUED or (m.wait_reason and m.status in states.RUNNING)
        ]
        if not waiting:
            return {}
        self.prefetch(m.domain for m in waiting)
        out: dict[int, str] = {}
        for m in waiting:
            failed: list[Constraint] = []
            if self.cfg.paused:
                failed.append(Constraint("paused", False, "orquestrador pausado"))
            if (
                m.status == MissionStatus.QUEUED
                and m.next_attempt_at
                and m.next_attempt_at > self.now
            ):
                failed.append(Constraint("backoff", False, f"aguardando a tentativa {m.attempt}"))
            group, _ = self.group(m.domain, m.pending_items or 1)
            text = _summary(failed, [(group, group.failed)] if group.failed else [], multi=False)
            out[m.pk] = text or m.wait_reason or "aguarda o próximo ciclo do gerenciador"
        return out


# --------------------------------------------------------------------------- helpers


def _pending_by_domain(mission: Mission) -> dict[str, int]:
    qs = MissionItem.objects.filter(mission=mission, status=ItemStatus.PENDING)
    urls = list(qs.order_by("id").values_list("url", flat=True)[:MAX_ITEMS_SCANNED])
    counts = Counter(distributor.domain_of(u) or mission.domain for u in urls)
    if len(urls) == MAX_ITEMS_SCANNED:
        rest = qs.count() - len(urls)
        if rest > 0:
            counts[normalize_domain(mission.domain)] += rest
    return dict(counts.most_common())


def _live_sessions(mission: Mission) -> list[BrowserSession]:
    return list(
        BrowserSession.objects.filter(
            mission=mission, attempt=mission.attempt, status__in=states.SESSION_LIVE
        ).exclude(status="closing")
    )


def _failed_proxies(mission: Mission) -> set[str]:
    return set(
        BrowserSession.objects.filter(
            mission=mission, attempt=mission.attempt, status__in=["failed", "stuck", "disconnected"]
        )
        .exclude(proxy_external_id="")
        .values_list("proxy_external_id", flat=True)
    )


def _unassigned_reasons(
    mission: Mission, live: list[BrowserSession]
) -> dict[str, Counter[distributor.Reason]]:
    """Ask the distributor why pending items would stay unassigned on the live sessions
    (capacity ignored: a full session frees up when its job ends)."""
    pending = list(
        MissionItem.objects.filter(mission=mission, status=ItemStatus.PENDING)
        .order_by("id")
        .values_list("id", "url", "failed_proxies")[:MAX_ITEMS_SCANNED]
    )
    if not pending:
        return {}
    infos = [
        distributor.ItemInfo(i, url, excluded_proxies=frozenset(str(p) for p in failed or ()))
        for i, url, failed in pending
    ]
    sessions = [
        distributor.SessionInfo(
            s.pk,
            s.proxy_external_id or None,
            s.proxy_type or None,
            s.proxy_country or None,
            len(infos),
        )
        for s in live
    ]
    # Each item's domain gets its resolved rule (the one site lookup, `for_domains`).
    domains = {distributor.domain_of(i.url) for i in infos} - {""}
    rules = [
        dataclasses.replace(distributor.SiteRule.from_site_config(site), domain=domain)
        for domain, site in SiteConfig.for_domains(domains).items()
    ]
    result = distributor.items_to_sessions(infos, sessions, rules)
    reasons: dict[str, Counter[distributor.Reason]] = {}
    for u in result.unassigned:
        reasons.setdefault(distributor.domain_of(u.item.url), Counter())[u.reason] += 1
    return reasons


_REASONS = {
    distributor.Reason.NO_SESSION_FOR_PROXY_TYPE: "nenhuma sessão ativa com o tipo de proxy exigido",
    distributor.Reason.NO_SESSION_FOR_GEO: "nenhuma sessão ativa no país exigido",
    distributor.Reason.ALL_FITTING_PROXIES_BLOCKED: "todos os proxies das sessões já falharam estes itens",
    distributor.Reason.NO_CAPACITY: "sessões sem capacidade",
}


def _reason_words(reasons: Counter[distributor.Reason], domain: str) -> str:
    parts = [f"{n} itens: {_REASONS[r]}" for r, n in reasons.most_common()]
    return f"{domain}: " + "; ".join(parts)


def _summary(
    failed: list[Constraint], groups: list[tuple[Group, list[Constraint]]], *, multi: bool
) -> str:
    parts = [c.message for c in failed]
    seen: set[str] = set(parts)
    for group, constraints in groups:
        for c in constraints:
            text = (
                f"{group.domain} ({group.pending_items} itens): {c.message}" if multi else c.message
            )
            if text not in seen:
                seen.add(text)
                parts.append(text)
    return "; ".join(parts)


def explain_mission(mission: Mission, now: dt.datetime | None = None) -> Explanation:
    return Explainer(now).mission(mission)


def dry_run(
    *,
    domain: str,
    url_count: int,
    site: SiteConfig | None = None,
    writer_id: int | None = None,
    now: dt.datetime | None = None,
) -> Explanation:
    return Explainer(now).hypothetical(
        domain=domain, url_count=url_count, site=site, writer_id=writer_id
    )


def annotate_waiting(missions: Sequence[Mission], now: dt.datetime | None = None) -> None:
    """Set `explain_summary` on each waiting mission of a list (dashboard tooltips)."""
    summaries = Explainer(now).summaries(missions)
    for m in missions:
        m.explain_summary = summaries.get(m.pk, "")  # type: ignore[attr-defined]
