"""Which proxies a site's sessions may use, and how many sessions a group wants: the
allocator's own predicates, in one place, so the explainer cannot drift from them.

`ProxyRule` is what a site (plus the proxies excluded for its domain) asks of a proxy.
`refusal` is the pure, per-row form; `tally` counts its answers per cause and the room
left, and `refusal_words` says them in pt-BR (the allocator's `ALLOC_NO_PROXY` reason and
the explainer both read them); `rule_q` is the same rule as a database filter (the
allocator locks rows with it). Tests evaluate them over the same rows and check they
agree.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from django.db.models import BooleanField, ExpressionWrapper, F, Q

from orchestrator import providers
from registry import geo
from registry.models import RULE_DEFAULTS, Proxy, ProxyStatus, ProxyType, SiteConfig

# What `refusal` answers, by the first rule a proxy fails ("" when it is usable).
# not of the site's types or countries, or a managed proxy its provider cannot use:
# not counted at all
OTHER_KIND = "other_kind"
DISABLED = "disabled"  # disabled, banned
BLOCKED = "blocked"  # in the site's blocklist or excluded for its domain
AVOIDED = "avoided"  # already failed this mission's items (`ProxyRule.avoided`)
UNVERIFIED = "unverified"  # the site requires verified geo
LEARNED = "learned"  # blocked by the learned proxy x site health
COOLDOWN = "cooldown"
BUSY = "busy"  # every session slot in use


class ProxyFacts(Protocol):
    """The columns of a proxy the rule reads (a `Proxy` or a row tuple)."""

    @property
    def id(self) -> int: ...
    @property
    def external_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def country(self) -> str: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def status(self) -> str: ...
    @property
    def cooldown_until(self) -> dt.datetime | None: ...
    @property
    def active_sessions(self) -> int: ...
    @property
    def max_sessions(self) -> int: ...
    @property
    def geo_verified(self) -> bool: ...


class Facts(NamedTuple):
    """A proxy's `ProxyFacts` as read by `proxy_facts`."""

    id: int
    external_id: str
    type: str
    country: str
    enabled: bool
    status: str
    cooldown_until: dt.datetime | None
    active_sessions: int
    max_sessions: int
    geo_verified: bool


def proxy_facts(q: Q | None = None) -> list[Facts]:
    """The columns the rule reads of every proxy matching `q` (all when None), in one
    query: the allocator's no-proxy reason and the explainer count these."""
    rows = Proxy.objects.filter(q or Q()).values_list(*Facts._fields[:-1])
    verified = ExpressionWrapper(geo.verified_q(), output_field=BooleanField())
    return [Facts(*row) for row in rows.annotate(verified=verified)]


@dataclass(frozen=True)
class ProxyRule:
    types: frozenset[str]
    countries: frozenset[str]
    blocked: frozenset[str]
    need_verified: bool
    # Proxy types the site's provider cannot use (`providers`: Browserbase's managed
    # proxies serve only sites that run on Browserbase alone).
    unusable_types: frozenset[str] = frozenset()
    # Proxies left out for one mission only (they already failed its items): not
    # blocked for the site, and said apart in the reasons.
    avoided: frozenset[str] = frozenset()

    @classmethod
    def for_site(
        cls, site: SiteConfig, exclude: Iterable[str] = (), avoid: Iterable[str] = ()
    ) -> ProxyRule:
        """`exclude`: proxies blocked for the site's domain; `avoid`: proxies a mission
        leaves out (`avoided`)."""
        managed_ok = providers.accepted(site) == [providers.BROWSERBASE]
        blocked = frozenset(site.blocked_proxies or ()) | frozenset(exclude)
        return cls(
            types=frozenset(site.proxy_types or ()),
            countries=frozenset(c.upper() for c in site.countries or ()),
            blocked=blocked,
            need_verified=bool(getattr(site, "require_verified_geo", False)),
            unusable_types=frozenset() if managed_ok else frozenset({ProxyType.BROWSERBASE}),
            avoided=frozenset(avoid) - blocked,
        )

    @property
    def any_proxy(self) -> bool:
        """No type or country asked: the site may go without a proxy."""
        return not self.types and not self.countries

    @property
    def left_out(self) -> frozenset[str]:
        """The proxies no query for this rule may return: blocked or avoided."""
        return self.blocked | self.avoided


def any_country(p: ProxyFacts) -> bool:
    """A managed Browserbase proxy without a country of its own geolocates wherever the
    session asks (the site's country, `session_country`): it fits any country rule."""
    return p.type == ProxyType.BROWSERBASE and not p.country


def session_country(proxy_type: str, proxy_country: str, site: SiteConfig) -> str:
    """The country a session on this proxy asks for: the proxy's own, or for a managed
    Browserbase proxy without one, the site's first country (issue #17)."""
    if proxy_country or proxy_type != ProxyType.BROWSERBASE:
        return proxy_country
    return next((c.upper() for c in site.countries or () if c), "")


def refusal(
    rule: ProxyRule, p: ProxyFacts, now: dt.datetime, health_blocked: Iterable[int] = ()
) -> str:
    """Why `p` cannot carry a new session under `rule` ("" when it can). Pure."""
    if (
        (rule.types and p.type not in rule.types)
        or (rule.countries and p.country not in rule.countries and not any_country(p))
        or p.type in rule.unusable_types
    ):
        return OTHER_KIND
    if not p.enabled or p.status in (ProxyStatus.BANNED, ProxyStatus.DISABLED):
        return DISABLED
    if p.external_id in rule.blocked:
        return BLOCKED
    if p.external_id in rule.avoided:
        return AVOIDED
    if rule.need_verified and not p.geo_verified:
        return UNVERIFIED
    if p.id in health_blocked:
        return LEARNED
    if p.status == ProxyStatus.COOLDOWN and p.cooldown_until and p.cooldown_until > now:
        return COOLDOWN
    if p.active_sessions >= p.max_sessions:
        return BUSY
    return ""


def kind_q(rule: ProxyRule) -> Q:
    """`refusal(...) != OTHER_KIND` as a database filter: the proxies a rule counts."""
    q = Q()
    if rule.types:
        q &= Q(type__in=sorted(rule.types))
    if rule.countries:
        q &= Q(country__in=sorted(rule.countries)) | Q(type=ProxyType.BROWSERBASE, country="")
    if rule.unusable_types:
        q &= ~Q(type__in=sorted(rule.unusable_types))
    return q


def rule_q(rule: ProxyRule, now: dt.datetime) -> Q:
    """`refusal(...) == ""` as a database filter (the learned health comes in `blocked`)."""
    q = (
        Q(enabled=True, active_sessions__lt=F("max_sessions"))
        & (
            Q(status=ProxyStatus.AVAILABLE)
            | Q(status=ProxyStatus.COOLDOWN, cooldown_until__lte=now)
            | Q(status=ProxyStatus.COOLDOWN, cooldown_until__isnull=True)
        )
        & kind_q(rule)
    )
    if rule.need_verified:
        q &= geo.verified_q()
    if rule.left_out:
        q &= ~Q(external_id__in=sorted(rule.left_out))
    return q


def present_q(rule: ProxyRule) -> Q:
    """The proxies that fit `rule` whatever their load: of its kind, enabled, not
    banned, not blocked for the domain (`refusal` short of COOLDOWN and BUSY, which
    pass). Items wait for a session on one of these rather than fail on a proxy that
    already failed them (issue #15 case 4)."""
    q = Q(enabled=True) & ~Q(status__in=[ProxyStatus.BANNED, ProxyStatus.DISABLED]) & kind_q(rule)
    if rule.need_verified:
        q &= geo.verified_q()
    if rule.left_out:
        q &= ~Q(external_id__in=sorted(rule.left_out))
    return q


@dataclass(frozen=True)
class Tally:
    """`refusal`'s answers over a set of proxies: how many per cause, and the session
    room of the usable ones."""

    causes: Counter[str]
    room: int

    @property
    def total(self) -> int:
        """The proxies of the rule's kind (usable or not)."""
        return self.causes.total() - self.causes[OTHER_KIND]


def tally(
    rule: ProxyRule,
    proxies: Iterable[ProxyFacts],
    now: dt.datetime,
    health_blocked: Iterable[int] = (),
) -> Tally:
    """Count `refusal` per cause over `proxies` (pure)."""
    health = set(health_blocked)
    causes: Counter[str] = Counter()
    room = 0
    for p in proxies:
        cause = refusal(rule, p, now, health)
        causes[cause] += 1
        if not cause:
            room += p.max_sessions - p.active_sessions
    return Tally(causes, room)


def refusal_words(causes: Counter[str], total: int, domain: str) -> str:
    """Why no proxy has room, cause by cause, in the order operators read them
    (pt-BR; "" when no cause was counted)."""
    words = {
        BLOCKED: f"de {total} bloqueados para {domain}",
        AVOIDED: "já falharam nos itens desta missão",
        UNVERIFIED: "sem geo verificado (a estratégia exige)",
        LEARNED: f"de {total} bloqueados pela saúde proxy x site em {domain}",
        COOLDOWN: "em cooldown",
        BUSY: "em uso",
        DISABLED: "banidos/desativados",
    }
    return ", ".join(f"{causes[c]} {text}" for c, text in words.items() if causes[c])


def sessions_wanted(site: SiteConfig, pending: int) -> int:
    """Sessions a group of `pending` items wants: one per `items_per_job`, at least one,
    at most the site's `max_sessions`."""
    # A resolved rule always has both; an unresolved row may inherit them (None).
    most = site.max_sessions or RULE_DEFAULTS["max_sessions"]
    per_job = site.items_per_job or RULE_DEFAULTS["items_per_job"]
    return int(min(most, max(1, math.ceil(pending / max(1, per_job)))))
