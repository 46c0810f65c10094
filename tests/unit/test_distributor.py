from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.distributor import (
    MAX_LEVELS,
    Distribution,
    ItemInfo,
    Reason,
    SessionInfo,
    SiteRule,
    Unassigned,
    _by_heaps,
    _rules_by_domain,
    domain_of,
    items_to_sessions,
)
from registry.models import SiteConfig, normalize_domain


def item(id: int, url: str = "https://shop.com/p", **kwargs: object) -> ItemInfo:
    return ItemInfo(id=id, url=url, **kwargs)  # type: ignore[arg-type]


def session(
    id: int,
    proxy_id: str | None = None,
    proxy_type: str | None = "datacenter",
    proxy_geo: str | None = "BR",
    capacity: int = 10,
) -> SessionInfo:
    if proxy_id is None and proxy_type is not None:
        proxy_id = f"px-{id}"
    return SessionInfo(id, proxy_id, proxy_type, proxy_geo, capacity)


def direct(id: int, capacity: int = 10) -> SessionInfo:
    return SessionInfo(id, None, None, None, capacity)


def rule(
    domain: str = "*",
    types: Iterable[str] = (),
    geos: Iterable[str] = (),
    blocked: Iterable[str] = (),
) -> SiteRule:
    return SiteRule(domain, frozenset(types), frozenset(geos), frozenset(blocked))


def assigned_ids(result: Distribution) -> dict[int, int]:
    return {i.id: s.id for i, s in result.assignments}


def reasons(result: Distribution) -> dict[int, Reason]:
    return {u.item.id: u.reason for u in result.unassigned}


# --- domain_of ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "domain"),
    [
        ("https://shop.com/p/1", "shop.com"),
        ("https://www.Shop.COM/p/1", "shop.com"),
        ("http://user:pw@www.shop.com:8080/x?y#z", "shop.com"),
        ("https://shop.com?q=1", "shop.com"),
        ("https://shop.com.", "shop.com"),
        ("https://[2001:db8::1]:443/x", "2001:db8::1"),
        ("shop.com/p/1", "shop.com"),
        ("  HTTPS://WWW.shop.com/", "shop.com"),
        ("", ""),
    ],
)
def test_domain_of_takes_the_host_without_www_port_or_credentials(url: str, domain: str) -> None:
    assert domain_of(url) == domain


_label = st.text("abcxyz019-", min_size=1, max_size=6)


@given(
    scheme=st.sampled_from(["http", "https", "HTTPS"]),
    www=st.sampled_from(["", "www.", "WWW."]),
    labels=st.lists(_label, min_size=1, max_size=3),
    userinfo=st.sampled_from(["", "u@", "u:p@"]),
    port=st.sampled_from(["", ":80", ":8443"]),
    rest=st.sampled_from(["", "/", "/a/b", "?q=1", "#f", "/a?b=c#d"]),
)
@settings(max_examples=200)
def test_domain_of_agrees_with_the_urlsplit_domain_used_by_missions(
    scheme: str, www: str, labels: list[str], userinfo: str, port: str, rest: str
) -> None:
    url = f"{scheme}://{userinfo}{www}{'.'.join(labels)}{port}{rest}"
    # How missions derive their domain (orchestrator.actions.domain_of).
    assert domain_of(url) == normalize_domain(urlsplit(url).hostname or "")


# --- SiteRule.from_site_config -------------------------------------------------------


def test_from_site_config_normalizes_domain_and_countries() -> None:
    cfg = SiteConfig(
        domain="www.Shop.com",
        proxy_types=["residential"],
        countries=["br", "US"],
        blocked_proxies=["px-1"],
    )
    assert SiteRule.from_site_config(cfg) == rule(
        "shop.com", {"residential"}, {"BR", "US"}, {"px-1"}
    )


def test_from_site_config_keeps_the_default_domain_and_accepts_empty_lists() -> None:
    cfg = SimpleNamespace(domain="*", proxy_types=None, countries=[], blocked_proxies=[])
    assert SiteRule.from_site_config(cfg) == rule("*")


@pytest.mark.parametrize("value", ["Shop.com", "www.shop.com.", " WWW.shop.com ", "www.www.a", ""])
def test_domain_normalization_matches_the_registry(value: str) -> None:
    assert domain_of(f"https://{value.strip()}/") == normalize_domain(value)


# --- examples ----------------------------------------------------------------------------


def test_no_items_give_an_empty_distribution() -> None:
    assert items_to_sessions([], [session(1)], []) == Distribution([], [])


def test_without_sessions_every_item_lacks_a_proxy_type() -> None:
    result = items_to_sessions([item(1), item(2)], [], [])
    assert result.assignments == []
    assert reasons(result) == {
        1: Reason.NO_SESSION_FOR_PROXY_TYPE,
        2: Reason.NO_SESSION_FOR_PROXY_TYPE,
    }


def test_a_single_session_takes_items_up_to_its_capacity() -> None:
    items = [item(i) for i in range(1, 5)]
    result = items_to_sessions(items, [session(7, capacity=3)], [])
    assert assigned_ids(result) == {1: 7, 2: 7, 3: 7}
    assert result.unassigned == [Unassigned(items[3], Reason.NO_CAPACITY)]


def test_sessions_without_capacity_leave_items_for_no_capacity() -> None:
    result = items_to_sessions([item(1)], [session(1, capacity=0), session(2, capacity=-3)], [])
    assert reasons(result) == {1: Reason.NO_CAPACITY}


def test_done_items_are_neither_assigned_nor_unassigned() -> None:
    result = items_to_sessions([item(1, done=True), item(2)], [session(1)], [])
    assert assigned_ids(result) == {2: 1}
    assert result.unassigned == []


def test_only_sessions_of_an_allowed_proxy_type_are_used() -> None:
    sessions = [session(1, proxy_type="datacenter", capacity=50), session(2, proxy_type="mobile")]
    result = items_to_sessions(
        [item(1), item(2)], sessions, [rule("shop.com", types={"mobile", "isp"})]
    )
    assert assigned_ids(result) == {1: 2, 2: 2}


def test_an_item_without_a_session_of_its_proxy_type_says_so() -> None:
    result = items_to_sessions([item(1)], [session(1), direct(2)], [rule(types={"mobile"})])
    assert reasons(result) == {1: Reason.NO_SESSION_FOR_PROXY_TYPE}


def test_direct_sessions_fit_only_rules_without_proxy_types() -> None:
    result = items_to_sessions(
        [item(1, "https://open.com/"), item(2, "https://strict.com/")],
        [direct(1)],
        [rule("strict.com", types={"datacenter"})],
    )
    assert assigned_ids(result) == {1: 1}
    assert reasons(result) == {2: Reason.NO_SESSION_FOR_PROXY_TYPE}


def test_the_session_geo_must_be_one_of_the_rule_countries() -> None:
    sessions = [session(1, proxy_geo="US", capacity=50), session(2, proxy_geo="BR")]
    result = items_to_sessions([item(1)], sessions, [rule(geos={"BR"})])
    assert assigned_ids(result) == {1: 2}


def test_a_session_without_geo_fails_a_rule_with_countries() -> None:
    sessions = [session(1, proxy_geo=None), session(2, proxy_geo="US")]
    result = items_to_sessions([item(1)], sessions, [rule(geos={"BR"})])
    assert reasons(result) == {1: Reason.NO_SESSION_FOR_GEO}


def test_a_session_without_geo_fits_a_rule_without_countries() -> None:
    result = items_to_sessions([item(1)], [session(1, proxy_geo=None)], [rule()])
    assert assigned_ids(result) == {1: 1}


def test_blocked_proxies_are_never_used_for_their_domain() -> None:
    sessions = [session(1, "px-a", capacity=50), session(2, "px-b")]
    result = items_to_sessions(
        [item(1), item(2, "https://other.com/")], sessions, [rule("shop.com", blocked={"px-a"})]
    )
    assert assigned_ids(result) == {1: 2, 2: 1}


def test_when_every_fitting_proxy_is_blocked_the_reason_says_so() -> None:
    sessions = [session(1, "px-a"), session(2, "px-b", proxy_type="mobile")]
    result = items_to_sessions(
        [item(1)], sessions, [rule("shop.com", types={"datacenter"}, blocked={"px-a"})]
    )
    assert reasons(result) == {1: Reason.ALL_FITTING_PROXIES_BLOCKED}


def test_an_item_avoids_the_proxies_that_already_failed_it() -> None:
    # px-a backs two sessions with the most room; the item must skip both.
    sessions = [session(1, "px-a", capacity=9), session(2, "px-a", capacity=9), session(3, "px-b")]
    items = [item(1, excluded_proxies=frozenset({"px-a"})), item(2)]
    result = items_to_sessions(items, sessions, [])
    assert assigned_ids(result) == {1: 3, 2: 1}


def test_an_item_whose_every_fitting_proxy_failed_is_blocked() -> None:
    sessions = [session(1, "px-a"), session(2, "px-a"), direct(3)]
    items = [item(1, excluded_proxies=frozenset({"px-a", "px-z"}))]
    result = items_to_sessions(items, sessions, [rule(types={"datacenter"})])
    assert reasons(result) == {1: Reason.ALL_FITTING_PROXIES_BLOCKED}


def test_an_item_whose_remaining_proxies_are_full_lacks_capacity() -> None:
    sessions = [session(1, "px-a"), session(2, "px-b", capacity=1)]
    failed_a = frozenset({"px-a"})
    items = [item(1), item(2, excluded_proxies=failed_a), item(3, excluded_proxies=failed_a)]
    result = items_to_sessions(items, sessions, [])
    assert assigned_ids(result) == {1: 1, 2: 2}
    assert reasons(result) == {3: Reason.NO_CAPACITY}


def test_reasons_are_decided_type_then_geo_then_blocked_then_capacity() -> None:
    sessions = [session(1, "px-a", "mobile", "US", capacity=0)]
    rules = [
        rule("type.com", types={"isp"}, geos={"BR"}, blocked={"px-a"}),
        rule("geo.com", types={"mobile"}, geos={"BR"}, blocked={"px-a"}),
        rule("blocked.com", types={"mobile"}, geos={"US"}, blocked={"px-a"}),
        rule("full.com", types={"mobile"}, geos={"US"}),
    ]
    items = [
        item(i, f"https://{d}/")
        for i, d in enumerate(["type.com", "geo.com", "blocked.com", "full.com"])
    ]
    assert reasons(items_to_sessions(items, sessions, rules)) == {
        0: Reason.NO_SESSION_FOR_PROXY_TYPE,
        1: Reason.NO_SESSION_FOR_GEO,
        2: Reason.ALL_FITTING_PROXIES_BLOCKED,
        3: Reason.NO_CAPACITY,
    }


def test_domains_match_their_rule_with_or_without_www() -> None:
    sessions = [session(1, proxy_type="datacenter"), session(2, proxy_type="mobile")]
    rules = [rule("www.Shop.com", types={"mobile"}), rule("*", types={"datacenter"})]
    items = [item(1, "https://www.shop.com/a"), item(2, "https://SHOP.com:8443/b")]
    assert assigned_ids(items_to_sessions(items, sessions, rules)) == {1: 2, 2: 2}


def test_the_default_rule_applies_to_domains_without_their_own() -> None:
    sessions = [session(1, proxy_type="datacenter"), session(2, proxy_type="mobile")]
    rules = [rule("shop.com", types={"datacenter"}), rule("*", types={"mobile"})]
    items = [item(1, "https://shop.com/"), item(2, "https://elsewhere.org/")]
    assert assigned_ids(items_to_sessions(items, sessions, rules)) == {1: 1, 2: 2}


def test_without_a_default_rule_anything_goes() -> None:
    sessions = [session(1, proxy_type="mobile", proxy_geo=None, capacity=1), direct(2, 1)]
    result = items_to_sessions([item(1), item(2)], sessions, [rule("x.com", types={"isp"})])
    assert sorted(assigned_ids(result).values()) == [1, 2]


def test_ten_items_spread_five_and_five_over_two_equal_sessions() -> None:
    items = [item(i) for i in range(10)]
    for capacity in (5, 100):
        result = items_to_sessions(
            items, [session(2, capacity=capacity), session(1, capacity=capacity)], []
        )
        assert {k: len(v) for k, v in result.by_session().items()} == {1: 5, 2: 5}
        assert [s.id for _, s in result.assignments] == [1, 2] * 5


def test_the_session_with_the_most_room_left_gets_the_next_item() -> None:
    items = [item(i) for i in range(10)]
    result = items_to_sessions(items, [session(1, capacity=10), session(2, capacity=2)], [])
    # 8 items level the sessions at 2 left each, then they alternate (ties: lower id).
    assert Counter(s.id for _, s in result.assignments) == {1: 9, 2: 1}


def test_sessions_shared_by_several_rules_stay_balanced() -> None:
    sessions = [session(1, proxy_geo="BR"), session(2, proxy_geo="US")]
    rules = [rule("br.com", geos={"BR"}), rule("*")]
    items = [item(i, "https://br.com/") for i in range(4)] + [item(9, "https://x.com/")]
    result = items_to_sessions(items, sessions, rules)
    assert assigned_ids(result)[9] == 2  # session 1 has 6 left, session 2 has 10


def test_by_session_groups_items_in_assignment_order() -> None:
    items = [item(i) for i in range(4)]
    result = items_to_sessions(items, [session(1), session(2)], [])
    assert result.by_session() == {1: [items[0], items[2]], 2: [items[1], items[3]]}


@pytest.mark.parametrize(
    ("items", "sessions", "rules"),
    [
        ([item(1), item(1)], [], []),
        ([], [session(1), session(1)], []),
        ([], [], [rule("shop.com"), rule("www.shop.com")]),
    ],
)
def test_duplicate_ids_or_domains_are_rejected(
    items: list[ItemInfo], sessions: list[SessionInfo], rules: list[SiteRule]
) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        items_to_sessions(items, sessions, rules)


# --- properties --------------------------------------------------------------------------

PROXIES = ["p0", "p1", "p2", "p3"]
TYPES = ["dc", "res", "mob"]
GEOS = ["BR", "US", "DE"]
DOMAINS = ["a.com", "b.com", "c.com", "d.com"]


def _subset(values: list[str]) -> st.SearchStrategy[frozenset[str]]:
    """One draw among every subset (cheaper for hypothesis than st.frozensets)."""
    subsets = [
        frozenset(v for bit, v in enumerate(values) if mask >> bit & 1)
        for mask in range(1 << len(values))
    ]
    return st.sampled_from(subsets)


# Few, coarse draws keep the generators cheap: this file should run in a few seconds.
_session = st.tuples(
    st.sampled_from([*PROXIES, None]),  # None: a direct session
    st.sampled_from(TYPES),
    st.sampled_from([*GEOS, None]),
    st.integers(-1, 4),
)
_sessions_strategy = st.lists(
    st.tuples(st.integers(1, 10_000), _session), unique_by=lambda t: t[0], max_size=8
).map(
    lambda rows: [
        SessionInfo(sid, None, None, None, cap)
        if proxy is None
        else SessionInfo(sid, proxy, type_, geo, cap)
        for sid, (proxy, type_, geo, cap) in rows
    ]
)


def _sessions() -> st.SearchStrategy[list[SessionInfo]]:
    return _sessions_strategy


_rules_strategy = st.lists(
    st.tuples(
        st.sampled_from([*DOMAINS[:3], "*"]), _subset(TYPES), _subset(GEOS), _subset(PROXIES)
    ),
    unique_by=lambda t: t[0],
    max_size=4,
).map(lambda rows: [SiteRule(*row) for row in rows])


def _rules() -> st.SearchStrategy[list[SiteRule]]:
    return _rules_strategy


_HOSTS = [f"{prefix}{domain}" for prefix in ("", "www.", "WWW.") for domain in DOMAINS]
_EXCLUSIONS: list[frozenset[str]] = [frozenset()] * 3 + [
    frozenset(x) for x in ({"p0"}, {"p1", "p2"}, PROXIES)
]
_items_strategy = st.lists(
    st.tuples(
        st.sampled_from(_HOSTS),
        st.sampled_from([False, False, False, True]),
        st.sampled_from(_EXCLUSIONS),
    ),
    max_size=25,
).map(
    lambda rows: [
        ItemInfo(i, f"https://{host}/{i}", done=done, excluded_proxies=excluded)
        for i, (host, done, excluded) in enumerate(rows)
    ]
)


def _items() -> st.SearchStrategy[list[ItemInfo]]:
    return _items_strategy


def _rule_for(url: str, rules: list[SiteRule]) -> SiteRule:
    by_domain = {r.domain: r for r in rules}
    host = url.split("/")[2].lower().removeprefix("www.")
    return by_domain.get(host) or by_domain.get("*") or SiteRule("*")


def _type_ok(r: SiteRule, s: SessionInfo) -> bool:
    return not r.proxy_types or s.proxy_type in r.proxy_types


def _geo_ok(r: SiteRule, s: SessionInfo) -> bool:
    return not r.geos or s.proxy_geo in r.geos


def _open(r: SiteRule, i: ItemInfo, s: SessionInfo) -> bool:
    return s.proxy_id not in r.blocked_proxy_ids and s.proxy_id not in i.excluded_proxies


def _fits(r: SiteRule, i: ItemInfo, s: SessionInfo) -> bool:
    """Every rule but capacity."""
    return _type_ok(r, s) and _geo_ok(r, s) and _open(r, i, s)


def _static_reason(r: SiteRule, i: ItemInfo, sessions: list[SessionInfo]) -> Reason:
    """The reason an item would be left over, assuming its fitting sessions are full."""
    if not any(_type_ok(r, s) for s in sessions):
        return Reason.NO_SESSION_FOR_PROXY_TYPE
    if not any(_type_ok(r, s) and _geo_ok(r, s) for s in sessions):
        return Reason.NO_SESSION_FOR_GEO
    if not any(_fits(r, i, s) for s in sessions):
        return Reason.ALL_FITTING_PROXIES_BLOCKED
    return Reason.NO_CAPACITY


def reference(
    items: list[ItemInfo], sessions: list[SessionInfo], rules: list[SiteRule]
) -> Distribution:
    """Brute force with the same policy: every session in id order, most room wins."""
    left = {s.id: max(0, s.capacity) for s in sessions}
    assignments, unassigned = [], []
    for i in items:
        if i.done:
            continue
        r = _rule_for(i.url, rules)
        best = None
        for s in sorted(sessions, key=lambda s: s.id):
            if _fits(r, i, s) and left[s.id] and (best is None or left[s.id] > left[best.id]):
                best = s
        if best is None:
            unassigned.append(Unassigned(i, _static_reason(r, i, sessions)))
        else:
            left[best.id] -= 1
            assignments.append((i, best))
    return Distribution(assignments, unassigned)


def check_constraints(
    result: Distribution, items: list[ItemInfo], sessions: list[SessionInfo], rules: list[SiteRule]
) -> None:
    used = Counter(s.id for _, s in result.assignments)
    for s in sessions:
        assert used[s.id] <= max(0, s.capacity), "over capacity"
    for i, s in result.assignments:
        assert _fits(_rule_for(i.url, rules), i, s), "assignment breaks a rule"
        assert s in sessions
    handled = [i.id for i, _ in result.assignments] + [u.item.id for u in result.unassigned]
    assert sorted(handled) == sorted(i.id for i in items if not i.done), "each item exactly once"
    for u in result.unassigned:
        r = _rule_for(u.item.url, rules)
        assert u.reason == _static_reason(r, u.item, sessions), "wrong reason"
        if u.reason is Reason.NO_CAPACITY:
            # Capacity only goes down, so sessions full at the end were full back then.
            assert all(used[s.id] >= s.capacity for s in sessions if _fits(r, u.item, s))


@given(items=_items(), sessions=_sessions(), rules=_rules())
@settings(max_examples=400)
def test_every_distribution_obeys_the_rules_and_gives_true_reasons(
    items: list[ItemInfo], sessions: list[SessionInfo], rules: list[SiteRule]
) -> None:
    check_constraints(items_to_sessions(items, sessions, rules), items, sessions, rules)


@given(items=_items(), sessions=_sessions(), rules=_rules(), data=st.data())
@settings(max_examples=200)
def test_the_result_is_deterministic_and_ignores_input_order_of_sessions_and_rules(
    items: list[ItemInfo], sessions: list[SessionInfo], rules: list[SiteRule], data: st.DataObject
) -> None:
    first = items_to_sessions(items, sessions, rules)
    assert items_to_sessions(items, sessions, rules) == first
    shuffled = items_to_sessions(
        iter(items), data.draw(st.permutations(sessions)), data.draw(st.permutations(rules))
    )
    assert shuffled == first


@given(items=_items(), sessions=_sessions(), rules=_rules())
@settings(max_examples=300)
def test_it_satisfies_the_same_constraints_as_a_brute_force_reference(
    items: list[ItemInfo], sessions: list[SessionInfo], rules: list[SiteRule]
) -> None:
    got = items_to_sessions(items, sessions, rules)
    want = reference(items, sessions, rules)
    check_constraints(want, items, sessions, rules)
    assert len(got.assignments) == len(want.assignments)
    assert reasons(got) == reasons(want)
    # Same policy, so even the pairing agrees; a policy change should update both.
    assert got == want


@given(
    n_items=st.integers(0, 60),
    capacities=st.lists(st.integers(0, 20), min_size=1, max_size=6),
)
@settings(max_examples=200)
def test_items_fill_the_roomiest_sessions_first(n_items: int, capacities: list[int]) -> None:
    sessions = [session(i + 1, capacity=c) for i, c in enumerate(capacities)]
    result = items_to_sessions([item(i) for i in range(n_items)], sessions, [])
    used = Counter(s.id for _, s in result.assignments)
    left = {s.id: s.capacity - used[s.id] for s in sessions}
    assert len(result.assignments) == min(n_items, sum(capacities))
    # Water-filling: a session that got items is at most one short of the roomiest one.
    for sid in used:
        assert left[sid] >= max(left.values()) - 1


@given(items=_items(), sessions=_sessions(), rules=_rules())
@settings(max_examples=200)
def test_the_heap_variant_for_huge_capacities_gives_the_same_result(
    items: list[ItemInfo], sessions: list[SessionInfo], rules: list[SiteRule]
) -> None:
    # Capacities of MAX_LEVELS and more switch from level bitsets to heaps: same answer.
    huge = [replace(s, capacity=s.capacity + MAX_LEVELS) for s in sessions]
    assert items_to_sessions(items, huge, rules) == reference(items, huge, rules)
    assert _by_heaps(items, sorted(sessions, key=lambda s: s.id), _rules_by_domain(rules)) == (
        reference(items, sessions, rules)
    )


def _many_rules_shape(
    rnd: random.Random,
) -> tuple[list[ItemInfo], list[SessionInfo], list[SiteRule]]:
    """Bigger random shapes: many domains, per-domain countries and blocked proxies,
    capacities from scarce to ample, items excluding proxies."""
    proxies = [f"px{i}" for i in range(rnd.randint(1, 12))]
    countries = ["BR", "US", "DE", "FR", "JP"]
    sessions = [
        SessionInfo(
            sid,
            None if rnd.random() < 0.1 else rnd.choice(proxies),
            rnd.choice([*TYPES, None]),
            rnd.choice([*countries, None]),
            rnd.randint(-1, rnd.choice([1, 3, 30])),
        )
        for sid in rnd.sample(range(1, 1000), rnd.randint(0, 40))
    ]
    domains = [f"d{i}.com" for i in range(rnd.randint(1, 30))]
    rules = [
        SiteRule(
            domain,
            frozenset(rnd.sample(TYPES, rnd.randint(0, 2))),
            frozenset(rnd.sample(countries, rnd.randint(0, 2))),
            frozenset(rnd.sample(proxies, rnd.randint(0, min(3, len(proxies))))),
        )
        for domain in [
            *rnd.sample(domains, rnd.randint(0, len(domains))),
            *(["*"] * rnd.randint(0, 1)),
        ]
    ]
    items = [
        ItemInfo(
            i,
            f"https://{rnd.choice(['', 'www.'])}{rnd.choice(domains)}/{i}",
            done=rnd.random() < 0.05,
            excluded_proxies=frozenset(rnd.sample(proxies, rnd.randint(0, min(2, len(proxies)))))
            if rnd.random() < 0.2
            else frozenset(),
        )
        for i in range(rnd.randint(0, 300))
    ]
    return items, sessions, rules


@given(rnd=st.randoms(use_true_random=False))
@settings(max_examples=60, deadline=None)
def test_many_rule_shapes_give_exactly_the_reference_result(rnd: random.Random) -> None:
    items, sessions, rules = _many_rules_shape(rnd)
    assert items_to_sessions(items, sessions, rules) == reference(items, sessions, rules)
