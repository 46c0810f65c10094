"""Which proxies a site's sessions may use, and how many sessions a group wants: the
allocator's own predicates, in one place, so the explainer cannot drift from them.

`ProxyRule` is what a site (plus the proxies excluded for its domain) asks of a proxy.
`refusal` is the pure, per-row form (the explainer counts its answers per cause);
`rule_q` is the same rule as a database filter (the allocator locks rows with it). A
test evaluates both over the same rows and checks they agree.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from django.db.models import F, Q

from registry import geo
from registry.models import RULE_DEFAULTS, ProxyStatus, SiteConfig

# What `refusal` answers, by the first rule a proxy fails ("" when it is usable).
OTHER_KIND = "other_kind"  # not of the site's types or countries: not counted at all
DISABLED = "disabled"  # disabled, banned
BLOCKED = "blocked"  # in the site's blocklist or excluded for its domain
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


@dataclass(frozen=True)
class ProxyRule:
    types: frozenset[str]
    countries: frozenset[str]
    blocked: frozenset[str]
    need_verified: bool

    @classmethod
    def for_site(cls, site: SiteConfig, exclude: Iterable[str] = ()) -> ProxyRule:
        return cls(
            types=frozenset(site.proxy_types or ()),
            countries=frozenset(c.upper() for c in site.countries or ()),
            blocked=frozenset(site.blocked_proxies or ()) | frozenset(exclude),
            need_verified=bool(getattr(site, "require_verified_geo", False)),
        )

    @property
    def any_proxy(self) -> bool:
        """No type or country asked: the site may go without a proxy."""
        return not self.types and not self.countries


def refusal(
    rule: ProxyRule, p: ProxyFacts, now: dt.datetime, health_blocked: Iterable[int] = ()
) -> str:
    """Why `p` cannot carry a new session under `rule` ("" when it can). Pure."""
    if (rule.types and p.type not in rule.types) or (
        rule.countries and p.country not in rule.countries
    ):
        return OTHER_KIND
    if not p.enabled or p.status in (ProxyStatus.BANNED, ProxyStatus.DISABLED):
        return DISABLED
    if p.external_id in rule.blocked:
        return BLOCKED
    if rule.need_verified and not p.geo_verified:
        return UNVERIFIED
    if p.id in health_blocked:
        return LEARNED
    if p.status == ProxyStatus.COOLDOWN and p.cooldown_until and p.cooldown_until > now:
        return COOLDOWN
    if p.active_sessions >= p.max_sessions:
        return BUSY
    return ""


def rule_q(rule: ProxyRule, now: dt.datetime) -> Q:
    """`refusal(...) == ""` as a database filter (the learned health comes in `blocked`)."""
    q = Q(enabled=True, active_sessions__lt=F("max_sessions")) & (
        Q(status=ProxyStatus.AVAILABLE)
        | Q(status=ProxyStatus.COOLDOWN, cooldown_until__lte=now)
        | Q(status=ProxyStatus.COOLDOWN, cooldown_until__isnull=True)
    )
    if rule.types:
        q &= Q(type__in=sorted(rule.types))
    if rule.countries:
        q &= Q(country__in=sorted(rule.countries))
    if rule.need_verified:
        q &= geo.verified_q()
    if rule.blocked:
        q &= ~Q(external_id__in=sorted(rule.blocked))
    return q


def sessions_wanted(site: SiteConfig, pending: int) -> int:
    """Sessions a group of `pending` items wants: one per `items_per_job`, at least one,
    at most the site's `max_sessions`."""
    # A resolved rule always has both; an unresolved row may inherit them (None).
    most = site.max_sessions or RULE_DEFAULTS["max_sessions"]
    per_job = site.items_per_job or RULE_DEFAULTS["items_per_job"]
    return int(min(most, max(1, math.ceil(pending / max(1, per_job)))))
