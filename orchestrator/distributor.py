"""Assign mission items to browser sessions: pure data in, pure data out.

No ORM, no I/O, no clock. The managers load items, sessions and site configs, call
`items_to_sessions` and persist what it decided.

Spreading policy: each item goes to the fitting session with the most remaining
capacity (ties: the lowest session id). This is water-filling rather than round-robin:
a session that arrives already half full gets fewer new items than an idle one, so the
sessions end the step equally loaded; with equal capacities it degenerates to an exact
alternation (10 items, 2 sessions of 5 -> 5 each). It also needs no per-group cursor,
so a session shared by several rules is balanced across all of them.

Speed: an index per rule, not a scan of the sessions per item. Sessions are numbered
by id order; `levels[c]` is the bitset (a Python int) of the sessions with `c` items of
room left, and each distinct rule strategy (proxy types, countries, blocked proxies)
gets, once, the bitset of the sessions that fit it. An item takes the lowest set bit of
`levels[c] & fitting` for the highest `c` where that is non-empty: most room, then
lowest id. Remaining capacity only goes down, so a rule's highest useful level only goes
down too and is kept as a cursor; an item's excluded proxies clear their sessions' bits.
An assignment costs a few big-int operations on n-bit ints, whatever the number of rules.
With huge capacities (`MAX_LEVELS` or more) the older variant answers instead: a lazy
max-heap of fitting sessions per rule strategy (`_by_heaps`), same result.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

DEFAULT_DOMAIN = "*"  # same value as registry.models.DEFAULT_DOMAIN


@dataclass(frozen=True, slots=True)
class ItemInfo:
    id: int
    url: str
    done: bool = False
    # Proxies that already failed this item.
    excluded_proxies: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: int
    proxy_id: str | None  # proxy external id; None = direct connection
    proxy_type: str | None
    proxy_geo: str | None  # ISO alpha-2, upper case, or None
    capacity: int  # how many items it may still take


class _SiteConfigLike(Protocol):
    domain: str
    proxy_types: Any
    countries: Any
    blocked_proxies: Any


@dataclass(frozen=True, slots=True)
class SiteRule:
    domain: str  # normalized, or "*" for the default
    proxy_types: frozenset[str] = frozenset()  # empty = any type
    geos: frozenset[str] = frozenset()  # empty = any country
    blocked_proxy_ids: frozenset[str] = frozenset()

    @classmethod
    def from_site_config(cls, cfg: _SiteConfigLike) -> SiteRule:
        """Build from a `registry.models.SiteConfig` (or anything shaped like one)."""
        domain = cfg.domain if cfg.domain == DEFAULT_DOMAIN else _normalize_domain(cfg.domain)
        return cls(
            domain=domain,
            proxy_types=frozenset(str(t) for t in cfg.proxy_types or ()),
            geos=frozenset(str(c).upper() for c in cfg.countries or ()),
            blocked_proxy_ids=frozenset(str(p) for p in cfg.blocked_proxies or ()),
        )


class Reason(StrEnum):
    NO_SESSION_FOR_PROXY_TYPE = "no_session_for_proxy_type"
    NO_SESSION_FOR_GEO = "no_session_for_geo"
    ALL_FITTING_PROXIES_BLOCKED = "all_fitting_proxies_blocked"
    NO_CAPACITY = "no_capacity"


@dataclass(frozen=True, slots=True)
class Unassigned:
    item: ItemInfo
    reason: Reason


@dataclass(frozen=True, slots=True)
class Distribution:
    assignments: list[tuple[ItemInfo, SessionInfo]]
    unassigned: list[Unassigned]

    def by_session(self) -> dict[int, list[ItemInfo]]:
        """Items per session id, in assignment order (sessions in first-assignment order)."""
        grouped: dict[int, list[ItemInfo]] = {}
        for item, session in self.assignments:
            grouped.setdefault(session.id, []).append(item)
        return grouped


def _normalize_domain(value: str) -> str:
    # Mirrors registry.models.normalize_domain; importing it would load the ORM.
    value = (value or "").strip().lower().rstrip(".")
    if value.startswith("www."):
        value = value[4:]
    return value


# The netloc of "scheme://netloc/..." or "//netloc/...", else of a scheme-less
# "host[:port]/path". Same split as urllib.parse.urlsplit for absolute URLs, ~4x faster.
_NETLOC = re.compile(r"\s*(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//([^/?#]*)|\s*([^/?#]*)")


def _host_of_netloc(netloc: str) -> str:
    host = netloc.rpartition("@")[2]
    if host.startswith("["):  # IPv6 literal: the port follows the bracket
        return _normalize_domain(host[1:].partition("]")[0])
    return _normalize_domain(host.partition(":")[0])


def _netloc_of(url: str) -> str:
    match = _NETLOC.match(url)
    assert match is not None  # the second branch matches any string
    netloc = match.group(1)
    return match.group(2) if netloc is None else netloc


def domain_of(url: str) -> str:
    """The URL's host, lower case, without `www.`, port or credentials ("" if none)."""
    return _host_of_netloc(_netloc_of(url))


class _Pool:
    """The sessions one rule strategy may use, and why an item of it may go unassigned."""

    __slots__ = ("has_geo", "has_type", "heap", "open_count", "plain_reason", "proxy_sessions")

    def __init__(self) -> None:
        self.heap: list[int] = []  # session keys, see `items_to_sessions`
        self.has_type = False  # some session has an allowed proxy type
        self.has_geo = False  # ... and an allowed geo
        self.open_count = 0  # ... and a proxy the rule does not block
        # proxy id -> how many of those open sessions use it (to judge item exclusions)
        self.proxy_sessions: dict[str, int] = {}
        # reason() of the items that exclude no proxy; set once the pool is built
        self.plain_reason = Reason.NO_SESSION_FOR_PROXY_TYPE

    def reason(self, excluded: frozenset[str]) -> Reason:
        if not self.has_type:
            return Reason.NO_SESSION_FOR_PROXY_TYPE
        if not self.has_geo:
            return Reason.NO_SESSION_FOR_GEO
        counts = self.proxy_sessions
        excluded_sessions = sum(counts.get(p, 0) for p in excluded) if excluded else 0
        if self.open_count <= excluded_sessions:
            return Reason.ALL_FITTING_PROXIES_BLOCKED
        return Reason.NO_CAPACITY


_ANYTHING_GOES = SiteRule(domain=DEFAULT_DOMAIN)
_WEB_SCHEMES = frozenset({"http:", "https:"})


# Above this many capacity levels (max remaining capacity + 1) the level-bitset index
# would walk too many empty levels; the heap variant then answers (same result).
MAX_LEVELS = 4096


def items_to_sessions(
    items: Iterable[ItemInfo],
    sessions: Iterable[SessionInfo],
    site_configs: Iterable[SiteRule],
) -> Distribution:
    """Assign each pending item to at most one fitting session.

    Items are taken in input order; `done` items are skipped. Raises ValueError on
    duplicate item ids, session ids or site-rule domains (they would make the result
    ambiguous).
    """
    items = list(items)
    if len({item.id for item in items}) != len(items):
        raise ValueError("duplicate item ids")
    ordered = sorted(sessions, key=lambda s: s.id)
    if len({s.id for s in ordered}) != len(ordered):
        raise ValueError("duplicate session ids")
    rules = _rules_by_domain(site_configs)
    top = max((s.capacity for s in ordered), default=0)
    if top < MAX_LEVELS:
        return _by_level_bitsets(items, ordered, rules)
    return _by_heaps(items, ordered, rules)


def _host_key(url: str) -> str:
    """What the per-call host cache is keyed by: plain http(s) URLs by what follows
    "//" (a cheap split), others by netloc."""
    parts = url.split("/", 3)
    if len(parts) > 2 and not parts[1] and parts[0] in _WEB_SCHEMES:
        return parts[2]
    return _netloc_of(url)


class _Rule:
    """One rule strategy as bitsets over session indexes (bit i = i-th session by id)."""

    __slots__ = ("fitting", "level", "plain_reason", "typed", "typed_geo")

    def __init__(self, typed: int, typed_geo: int, fitting: int, level: int) -> None:
        self.typed = typed  # sessions of an allowed proxy type
        self.typed_geo = typed_geo  # ... and an allowed geo
        self.fitting = fitting  # ... and a proxy the rule does not block
        # Highest capacity level that may still hold a fitting session: remaining
        # capacity only goes down, so it only goes down too.
        self.level = level
        self.plain_reason = self.reason(0)

    def reason(self, excluded_mask: int) -> Reason:
        if not self.typed:
            return Reason.NO_SESSION_FOR_PROXY_TYPE
        if not self.typed_geo:
            return Reason.NO_SESSION_FOR_GEO
        if not self.fitting & ~excluded_mask:
            return Reason.ALL_FITTING_PROXIES_BLOCKED
        return Reason.NO_CAPACITY


def _by_level_bitsets(
    items: list[ItemInfo], ordered: list[SessionInfo], rules: dict[str, SiteRule]
) -> Distribution:
    """Index per rule: `levels[c]` is the bitset of sessions with `c` items of room
    left; a rule's fitting sessions are one bitset. An item takes the lowest set bit of
    `levels[c] & fitting` for the highest such non-empty `c`: most room, then lowest id."""
    default_rule = rules.get(DEFAULT_DOMAIN, _ANYTHING_GOES)
    top = max((max(0, s.capacity) for s in ordered), default=0)
    levels = [0] * (top + 1)
    by_type: dict[str | None, int] = {}
    by_geo: dict[str | None, int] = {}
    by_proxy: dict[str, int] = {}
    for index, session in enumerate(ordered):
        bit = 1 << index
        levels[max(0, session.capacity)] |= bit
        by_type[session.proxy_type] = by_type.get(session.proxy_type, 0) | bit
        by_geo[session.proxy_geo] = by_geo.get(session.proxy_geo, 0) | bit
        if session.proxy_id is not None:
            by_proxy[session.proxy_id] = by_proxy.get(session.proxy_id, 0) | bit
    everyone = (1 << len(ordered)) - 1

    def union(masks: dict[Any, int], keys: Iterable[Any]) -> int:
        total = 0
        for key in keys:
            total |= masks.get(key, 0)
        return total

    strategies: dict[tuple[frozenset[str], frozenset[str], frozenset[str]], _Rule] = {}

    def rule_of(rule: SiteRule) -> _Rule:
        strategy = (rule.proxy_types, rule.geos, rule.blocked_proxy_ids)
        found = strategies.get(strategy)
        if found is None:
            typed = union(by_type, rule.proxy_types) if rule.proxy_types else everyone
            typed_geo = typed & (union(by_geo, rule.geos) if rule.geos else everyone)
            fitting = typed_geo & ~union(by_proxy, rule.blocked_proxy_ids)
            found = strategies[strategy] = _Rule(typed, typed_geo, fitting, top)
        return found

    rule_by_host: dict[str, _Rule] = {}
    assignments: list[tuple[ItemInfo, SessionInfo]] = []
    unassigned: list[Unassigned] = []
    for item in items:
        if item.done:
            continue
        host = _host_key(item.url)
        entry = rule_by_host.get(host)
        if entry is None:
            domain = _host_of_netloc(_netloc_of("//" + host))
            entry = rule_by_host[host] = rule_of(rules.get(domain, default_rule))
        fitting, level = entry.fitting, entry.level
        while level and not levels[level] & fitting:
            level -= 1
        entry.level = level
        excluded_mask = union(by_proxy, item.excluded_proxies) if item.excluded_proxies else 0
        if excluded_mask:
            fitting &= ~excluded_mask
            while level and not levels[level] & fitting:
                level -= 1
        if level:
            found = levels[level] & fitting
            bit = found & -found
            levels[level] ^= bit
            levels[level - 1] |= bit
            assignments.append((item, ordered[bit.bit_length() - 1]))
        elif excluded_mask:
            unassigned.append(Unassigned(item, entry.reason(excluded_mask)))
        else:
            unassigned.append(Unassigned(item, entry.plain_reason))
    return Distribution(assignments=assignments, unassigned=unassigned)


def _by_heaps(
    items: list[ItemInfo], ordered: list[SessionInfo], rules: dict[str, SiteRule]
) -> Distribution:
    """The same policy with one lazy max-heap per rule strategy (see the module doc)."""
    default_rule = rules.get(DEFAULT_DOMAIN, _ANYTHING_GOES)

    # A session's key packs "most remaining capacity first, then lowest id" into one
    # int (ints compare much faster than tuples in heapq): key = -remaining * m + index.
    # It is negative while the session has room; taking an item adds m.
    m = len(ordered) or 1
    keys = [-max(0, s.capacity) * m + index for index, s in enumerate(ordered)]

    groups: dict[tuple[str | None, str | None], list[int]] = {}
    for index, session in enumerate(ordered):
        groups.setdefault((session.proxy_type, session.proxy_geo), []).append(index)

    pools: dict[tuple[frozenset[str], frozenset[str], frozenset[str]], _Pool] = {}

    def pool_of(rule: SiteRule) -> _Pool:
        strategy = (rule.proxy_types, rule.geos, rule.blocked_proxy_ids)
        pool = pools.get(strategy)
        if pool is not None:
            return pool
        pool = pools[strategy] = _Pool()
        types, geos, blocked = strategy
        for (proxy_type, geo), members in groups.items():
            if types and proxy_type not in types:
                continue
            pool.has_type = True
            if geos and geo not in geos:
                continue
            pool.has_geo = True
            for index in members:
                proxy_id = ordered[index].proxy_id
                if proxy_id is not None:
                    if proxy_id in blocked:
                        continue
                    pool.proxy_sessions[proxy_id] = pool.proxy_sessions.get(proxy_id, 0) + 1
                pool.open_count += 1
                if keys[index] < 0:
                    pool.heap.append(keys[index])
        heapq.heapify(pool.heap)
        pool.plain_reason = pool.reason(frozenset())
        return pool

    # Host part of the URL -> pool; a mission's URLs share a handful of hosts. Plain
    # http(s) URLs are keyed by what follows "//" (a cheap split); others by netloc.
    pool_by_host: dict[str, _Pool] = {}
    assignments: list[tuple[ItemInfo, SessionInfo]] = []
    unassigned: list[Unassigned] = []
    heappop, heapreplace = heapq.heappop, heapq.heapreplace

    for item in items:
        if item.done:
            continue
        url = item.url
        parts = url.split("/", 3)
        if len(parts) > 2 and not parts[1] and parts[0] in _WEB_SCHEMES:
            host = parts[2]
        else:
            host = _netloc_of(url)
        pool = pool_by_host.get(host)
        if pool is None:
            domain = _host_of_netloc(_netloc_of("//" + host))
            pool = pool_by_host[host] = pool_of(rules.get(domain, default_rule))
        heap = pool.heap
        excluded = item.excluded_proxies
        # Only exclusions that touch this pool need the slower skipping walk.
        if excluded and not pool.proxy_sessions.keys().isdisjoint(excluded):
            chosen = _take_skipping(heap, keys, m, ordered, excluded)
        else:
            chosen = -1
            while heap:
                key = heap[0]
                index = key % m
                current = keys[index]
                if current != key:  # stale: another pool took from this session
                    if current < 0:
                        heapreplace(heap, current)
                    else:
                        heappop(heap)
                    continue
                key += m
                keys[index] = key
                if key < 0:
                    heapreplace(heap, key)
                else:
                    heappop(heap)
                chosen = index
                break
        if chosen >= 0:
            assignments.append((item, ordered[chosen]))
        elif excluded:
            unassigned.append(Unassigned(item, pool.reason(excluded)))
        else:
            unassigned.append(Unassigned(item, pool.plain_reason))
    return Distribution(assignments=assignments, unassigned=unassigned)


def _rules_by_domain(site_configs: Iterable[SiteRule]) -> dict[str, SiteRule]:
    """Site rules keyed by normalized domain; ValueError on a duplicate domain."""
    rules: dict[str, SiteRule] = {}
    for rule in site_configs:
        name = rule.domain if rule.domain == DEFAULT_DOMAIN else _normalize_domain(rule.domain)
        if name in rules:
            raise ValueError(f"duplicate site rule for domain {name!r}")
        rules[name] = rule
    return rules


def _take_skipping(
    heap: list[int],
    keys: list[int],
    m: int,
    ordered: list[SessionInfo],
    excluded: frozenset[str],
) -> int:
    """Like the fast path, but set aside the sessions whose proxy the item excludes."""
    skipped: list[int] = []
    chosen = -1
    while heap:
        key = heap[0]
        index = key % m
        current = keys[index]
        if current != key:
            if current < 0:
                heapq.heapreplace(heap, current)
            else:
                heapq.heappop(heap)
            continue
        if ordered[index].proxy_id in excluded:
            skipped.append(heapq.heappop(heap))
            continue
        key += m
        keys[index] = key
        if key < 0:
            heapq.heapreplace(heap, key)
        else:
            heapq.heappop(heap)
        chosen = index
        break
    for key in skipped:
        heapq.heappush(heap, key)
    return chosen
