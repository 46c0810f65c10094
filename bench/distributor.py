"""Benchmark `items_to_sessions` against a naive scan-every-session reference.

    python -m bench.distributor [--quick]

Both implementations follow the same policy (most remaining capacity, ties by lowest
session id), so besides both being valid their distributions must be identical; the
benchmark checks that on two data shapes (few rules; many rules), then compares best-of-3 CPU times (`time.process_time`: the
machine is shared, and CPU time of this single-threaded code is what other load cannot
inflate). The full run takes two to three minutes, nearly all of it in the naive reference.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from orchestrator.distributor import (
    DEFAULT_DOMAIN,
    Distribution,
    ItemInfo,
    Reason,
    SessionInfo,
    SiteRule,
    Unassigned,
    domain_of,
    items_to_sessions,
)

PROXY_TYPES = ("datacenter", "residential", "mobile", "isp")
GEOS = ("BR", "US", "DE", "FR", "GB", "JP", "IN", "MX", "AR", "CA")
REPEATS = 3

# Minimum speed-up over the naive reference, per (items, sessions, regime); other
# sizes must simply not be slower (target 1.0).
TARGETS = {
    (100_000, 1_000, "scarce"): 30.0,
    (100_000, 1_000, "ample"): 6.0,
}
# And at this size every shape must take at most this much CPU.
CEILING = {(100_000, 1_000): 0.300}
METHOD = "baseline: naive scan of every session per item, same policy, best-of-3 CPU s"


@dataclass(frozen=True, slots=True)
class Case:
    n_items: int
    n_sessions: int
    regime: str  # "scarce": total capacity < items; "ample": room for every item
    items: list[ItemInfo]
    sessions: list[SessionInfo]
    rules: list[SiteRule]

    @property
    def name(self) -> str:
        return f"distributor_{self.n_items}x{self.n_sessions}_{self.regime}"


def build_case(n_items: int, n_sessions: int, regime: str, seed: int = 7) -> Case:
    """A mix like production: a few strict domains, most on the `*` default, some
    direct sessions, a few blocked and excluded proxies, some items already done."""
    rng = random.Random(f"{seed}-{n_items}-{n_sessions}-{regime}")
    proxies = [f"px-{i}" for i in range(max(1, n_sessions * 3 // 4))]
    per_session = max(1, (n_items // 2 if regime == "scarce" else n_items * 2) // n_sessions)
    sessions = []
    for sid in range(1, n_sessions + 1):
        if rng.random() < 0.05:
            sessions.append(SessionInfo(sid, None, None, None, per_session))
            continue
        sessions.append(
            SessionInfo(
                id=sid,
                proxy_id=rng.choice(proxies),
                proxy_type=rng.choice(PROXY_TYPES),
                proxy_geo=rng.choice(GEOS) if rng.random() < 0.9 else None,
                capacity=rng.randint(per_session // 2, per_session * 3 // 2 + 1),
            )
        )
    rng.shuffle(sessions)
    domains = [f"shop{i}.example.com" for i in range(40)]
    rules = [SiteRule(DEFAULT_DOMAIN, frozenset({"datacenter", "residential", "isp"}))]
    for domain in domains[:15]:
        rules.append(
            SiteRule(
                domain,
                proxy_types=frozenset(rng.sample(PROXY_TYPES, rng.randint(1, 2))),
                geos=frozenset(rng.sample(GEOS, rng.randint(0, 3))),
                blocked_proxy_ids=frozenset(rng.sample(proxies, min(len(proxies), 5))),
            )
        )
    rules.append(SiteRule("nowhere.example.com", geos=frozenset({"ZZ"})))
    domains.append("nowhere.example.com")
    items = []
    for iid in range(1, n_items + 1):
        domain = rng.choice(domains)
        prefix = "www." if rng.random() < 0.3 else ""
        excluded = (
            frozenset(rng.sample(proxies, min(len(proxies), rng.randint(1, 3))))
            if rng.random() < 0.05
            else frozenset()
        )
        items.append(
            ItemInfo(
                id=iid,
                url=f"https://{prefix}{domain}/p/{iid}?ref=x",
                done=rng.random() < 0.05,
                excluded_proxies=excluded,
            )
        )
    return Case(n_items, n_sessions, regime, items, sessions, rules)


def build_many_rules_case(n_items: int, n_sessions: int, regime: str, seed: int = 11) -> Case:
    """Many site rules: several hundred domains, each with its own required countries
    and blocked proxies (a third also restrict proxy types), items spread over them,
    some excluding proxies that failed them; no session is direct."""
    rng = random.Random(f"many-{seed}-{n_items}-{n_sessions}-{regime}")
    proxies = [f"px-{i}" for i in range(max(1, n_sessions // 2))]
    per_session = max(1, (n_items // 2 if regime == "scarce" else n_items * 2) // n_sessions)
    sessions = [
        SessionInfo(
            id=sid,
            proxy_id=rng.choice(proxies),
            proxy_type=rng.choice(PROXY_TYPES),
            proxy_geo=rng.choice(GEOS),
            capacity=rng.randint(per_session // 2, per_session * 3 // 2 + 1),
        )
        for sid in range(1, n_sessions + 1)
    ]
    rng.shuffle(sessions)
    n_domains = max(10, min(500, n_items // 200))
    domains = [f"site{i}.example.net" for i in range(n_domains)]
    rules = [SiteRule(DEFAULT_DOMAIN)]
    for domain in domains:
        rules.append(
            SiteRule(
                domain,
                proxy_types=frozenset(rng.sample(PROXY_TYPES, 2))
                if rng.random() < 0.33
                else frozenset(),
                geos=frozenset(rng.sample(GEOS, rng.randint(1, 3))),
                blocked_proxy_ids=frozenset(
                    rng.sample(proxies, min(len(proxies), rng.randint(1, 20)))
                ),
            )
        )
    items = [
        ItemInfo(
            id=iid,
            url=f"https://{rng.choice(domains)}/item/{iid}",
            done=rng.random() < 0.05,
            excluded_proxies=frozenset(rng.sample(proxies, min(len(proxies), 2)))
            if rng.random() < 0.05
            else frozenset(),
        )
        for iid in range(1, n_items + 1)
    ]
    return Case(n_items, n_sessions, f"many-rules-{regime}", items, sessions, rules)


def naive_items_to_sessions(
    items: list[ItemInfo], sessions: list[SessionInfo], site_configs: list[SiteRule]
) -> Distribution:
    """The obvious algorithm: for each item, look at every session in id order and
    take the fitting one with the most remaining capacity."""
    ordered = sorted(sessions, key=lambda s: s.id)
    remaining = [max(0, s.capacity) for s in ordered]
    # Plain tuples, unpacked in the loop: no attribute look-ups per session visit.
    rows = [(i, s.proxy_type, s.proxy_geo, s.proxy_id) for i, s in enumerate(ordered)]
    rules = {r.domain: r for r in site_configs}
    default = rules.get(DEFAULT_DOMAIN, SiteRule(DEFAULT_DOMAIN))
    assignments: list[tuple[ItemInfo, SessionInfo]] = []
    unassigned: list[Unassigned] = []
    for item in items:
        if item.done:
            continue
        rule = rules.get(domain_of(item.url), default)
        types, geos = rule.proxy_types, rule.geos
        blocked, excluded = rule.blocked_proxy_ids, item.excluded_proxies
        best, best_left = -1, 0
        any_type = any_geo = any_open = False
        for index, proxy_type, geo, proxy_id in rows:
            if types and proxy_type not in types:
                continue
            any_type = True
            if geos and geo not in geos:
                continue
            any_geo = True
            if proxy_id is not None and (proxy_id in blocked or proxy_id in excluded):
                continue
            any_open = True
            left = remaining[index]
            if left > best_left:
                best, best_left = index, left
        if best >= 0:
            remaining[best] -= 1
            assignments.append((item, ordered[best]))
        elif not any_type:
            unassigned.append(Unassigned(item, Reason.NO_SESSION_FOR_PROXY_TYPE))
        elif not any_geo:
            unassigned.append(Unassigned(item, Reason.NO_SESSION_FOR_GEO))
        elif not any_open:
            unassigned.append(Unassigned(item, Reason.ALL_FITTING_PROXIES_BLOCKED))
        else:
            unassigned.append(Unassigned(item, Reason.NO_CAPACITY))
    return Distribution(assignments=assignments, unassigned=unassigned)


def check_valid(case: Case, result: Distribution) -> None:
    """Raise AssertionError unless every assignment obeys every rule."""
    rules = {r.domain: r for r in case.rules}
    default = rules.get(DEFAULT_DOMAIN, SiteRule(DEFAULT_DOMAIN))
    used: dict[int, int] = {}
    seen: set[int] = set()
    for item, session in result.assignments:
        rule = rules.get(domain_of(item.url), default)
        assert not item.done and item.id not in seen
        seen.add(item.id)
        assert not rule.proxy_types or session.proxy_type in rule.proxy_types
        assert not rule.geos or session.proxy_geo in rule.geos
        assert session.proxy_id not in rule.blocked_proxy_ids
        assert session.proxy_id not in item.excluded_proxies
        used[session.id] = used.get(session.id, 0) + 1
    for session in case.sessions:
        assert used.get(session.id, 0) <= max(0, session.capacity)
    for entry in result.unassigned:
        assert not entry.item.done and entry.item.id not in seen
        seen.add(entry.item.id)
    assert seen == {i.id for i in case.items if not i.done}


def best_of(fn: Callable[[], Distribution], repeats: int = REPEATS) -> tuple[float, Distribution]:
    best = float("inf")
    result: Distribution | None = None
    for _ in range(repeats):
        start = time.process_time()
        result = fn()
        best = min(best, time.process_time() - start)
    assert result is not None
    return best, result


def run(quick: bool = False) -> list[dict[str, object]]:
    """Time every case; one dict per case for `make bench`."""
    sizes = [(2_000, 20), (10_000, 100)] if quick else [(10_000, 100), (100_000, 1_000)]
    rows: list[dict[str, object]] = []
    for n_items, n_sessions in sizes:
        for builder, regime in (
            (build_case, "scarce"),
            (build_case, "ample"),
            (build_many_rules_case, "scarce"),
            (build_many_rules_case, "ample"),
        ):
            case = builder(n_items, n_sessions, regime)
            ours, got = best_of(partial(items_to_sessions, case.items, case.sessions, case.rules))
            naive, want = best_of(
                partial(naive_items_to_sessions, case.items, case.sessions, case.rules)
            )
            check_valid(case, got)
            check_valid(case, want)
            assert len(got.assignments) == len(want.assignments), case.name
            assert got == want, f"{case.name}: differs from the reference"
            ratio = naive / ours
            target = TARGETS.get((n_items, n_sessions, case.regime), 1.0)
            ceiling = CEILING.get((n_items, n_sessions))
            passed = ratio >= target and (ceiling is None or ours <= ceiling)
            rows.append(
                {
                    "name": case.name,
                    "value": round(ours, 4),
                    "baseline": round(naive, 4),
                    "ratio": round(ratio, 1),
                    "target": f">= {target}x naive"
                    + ("" if ceiling is None else f", <= {ceiling:.1f} s"),
                    "passed": passed,
                    "note": METHOD,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="small sizes, ~2 s")
    args = parser.parse_args(argv)
    rows = run(quick=args.quick)
    print(f"{'size':>14} {'regime':>7} {'ours s':>8} {'naive s':>8} {'ratio':>7} {'target':>7}")
    for row in rows:
        size = str(row["name"]).split("_")[1]
        print(
            f"{size:>14} {str(row['name']).rsplit('_', 1)[1]:>7} {row['value']:>8.4f} "
            f"{row['baseline']:>8.4f} {row['ratio']:>6}x {row['target']}"
            f"{'' if row['passed'] else '  FAIL'}"
        )
    print(json.dumps(rows))
    return 0 if all(row["passed"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
