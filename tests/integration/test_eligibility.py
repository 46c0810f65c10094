"""The allocator and the explainer share one proxy rule (`orchestrator.eligibility`):
the database filter the allocator locks with and the per-row answer the explainer
counts agree on every proxy, and both size a group with `sessions_wanted`."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from orchestrator import eligibility, explain
from orchestrator.allocation import Request, allocate_many, usable_proxies_q
from orchestrator.models import ProxyDomainHealth
from orchestrator.states import ErrorCode
from registry.models import Proxy, ProxyStatus, SiteConfig
from tests import factories

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def _fleet() -> None:
    """One proxy per combination of the facts the rule reads."""
    statuses = [
        (ProxyStatus.AVAILABLE, None),
        (ProxyStatus.COOLDOWN, None),
        (ProxyStatus.COOLDOWN, NOW - dt.timedelta(minutes=1)),
        (ProxyStatus.COOLDOWN, NOW + dt.timedelta(minutes=1)),
        (ProxyStatus.BANNED, None),
        (ProxyStatus.DISABLED, None),
    ]
    combos = itertools.product(
        ["datacenter", "residential", "mobile"],
        ["BR", "US"],
        [True, False],  # enabled
        statuses,
        [(0, 2), (2, 2)],  # active, max sessions
        [True, False],  # geo verified
    )
    for i, (kind, country, enabled, (status, until), (active, cap), verified) in enumerate(combos):
        factories.ProxyFactory(
            external_id=f"px-{i}",
            type=kind,
            country=country,
            enabled=enabled,
            status=status,
            cooldown_until=until,
            active_sessions=active,
            max_sessions=cap,
            geo_checked_at=NOW if verified else None,
            exit_country=country if verified else "",
        )


SITES = [
    {"proxy_types": [], "countries": []},
    {"proxy_types": ["datacenter"], "countries": []},
    {"proxy_types": ["residential", "mobile"], "countries": ["br"]},
    {"proxy_types": [], "countries": ["US"], "require_verified_geo": True},
    {"proxy_types": ["datacenter"], "blocked_proxies": ["px-0", "px-1", "px-7"]},
]


@pytest.mark.parametrize("fields", SITES)
@pytest.mark.parametrize("exclude", [(), ("px-2", "px-40")])
def test_the_allocator_filter_and_the_per_row_rule_agree(
    fields: dict[str, object], exclude: tuple[str, ...]
) -> None:
    _fleet()
    site = SiteConfig(domain="exemplo.com.br", max_sessions=4, items_per_job=10, **fields)
    rule = eligibility.ProxyRule.for_site(site, exclude)
    by_db = set(
        Proxy.objects.filter(usable_proxies_q(site, NOW, exclude)).values_list("pk", flat=True)
    )
    by_rule = {p.pk for p in Proxy.objects.all() if eligibility.refusal(rule, p, NOW) == ""}
    assert by_db == by_rule
    assert by_db  # the grid has usable proxies for every site


@pytest.mark.parametrize("fields", SITES[1:])
def test_the_explainer_counts_the_room_the_allocator_would_lock(fields: dict[str, object]) -> None:
    _fleet()
    site = SiteConfig(domain="exemplo.com.br", max_sessions=4, items_per_job=10, **fields)
    usable = Proxy.objects.filter(usable_proxies_q(site, NOW))
    room = sum(p.max_sessions - p.active_sessions for p in usable)
    constraint, counted = explain.Explainer(NOW).proxies(site, "exemplo.com.br")
    assert (constraint.ok, counted) == (room > 0, room)


def test_the_explainer_names_each_cause_when_no_proxy_has_room() -> None:
    factories.ProxyFactory(external_id="a", status=ProxyStatus.BANNED)
    factories.ProxyFactory(
        external_id="b", status=ProxyStatus.COOLDOWN, cooldown_until=NOW + dt.timedelta(hours=1)
    )
    factories.ProxyFactory(external_id="c", active_sessions=1, max_sessions=1)
    factories.ProxyFactory(external_id="d")
    site = SiteConfig(domain="x.com", proxy_types=["datacenter"], blocked_proxies=["d"])
    constraint, room = explain.Explainer(NOW).proxies(site, "x.com")
    assert room == 0
    assert constraint.ok is False
    assert constraint.message.endswith(
        "1 de 4 bloqueados para x.com, 1 em cooldown, 1 em uso, 1 banidos/desativados"
    )


@pytest.mark.parametrize("pending", [1, 10, 11, 39, 40, 41, 1000])
def test_both_size_a_group_with_sessions_wanted(pending: int) -> None:
    site = factories.SiteConfigFactory(domain="*", proxy_types=[], max_sessions=4, items_per_job=10)
    wanted = eligibility.sessions_wanted(site, pending)
    assert wanted == min(4, -(-pending // 10))
    explainer = explain.Explainer(timezone.now())
    full, none_more = explainer.group("x.com", pending, live_sessions=wanted)
    assert none_more == 0
    assert [c.code for c in full.constraints] == ["sessions"]
    short, _ = explainer.group("x.com", pending, live_sessions=wanted - 1)
    assert "sessions" not in [c.code for c in short.constraints]


def _proxy(external_id: str, **kw: object) -> None:
    factories.ProxyFactory(external_id=external_id, type=kw.pop("type", "datacenter"), **kw)


def _learned(external_id: str) -> None:
    ProxyDomainHealth.objects.create(
        proxy=Proxy.objects.get(external_id=external_id),
        domain="x.com",
        score=5,
        blocked_until=NOW + dt.timedelta(hours=1),
        updated_at=NOW,
    )


# (name, proxies, site fields, proxies the mission excludes, learned-blocked proxies)
NO_ROOM_CASES: list[tuple[str, list[dict[str, Any]], dict[str, Any], list[str], list[str]]] = [
    ("none of the kind", [{"type": "residential"}], {}, [], []),
    ("banned and disabled", [{"status": ProxyStatus.BANNED}, {"enabled": False}], {}, [], []),
    (
        "cooldown ahead, busy",
        [
            {"status": ProxyStatus.COOLDOWN, "cooldown_until": NOW + dt.timedelta(minutes=5)},
            {"active_sessions": 1, "max_sessions": 1},
        ],
        {},
        [],
        [],
    ),
    ("site blocklist and mission excludes", [{}, {}], {"blocked_proxies": ["p0"]}, ["p1"], []),
    (
        "unverified geo",
        [{"country": "BR"}],
        {"countries": ["BR"], "require_verified_geo": True},
        [],
        [],
    ),
    ("learned health", [{}, {"status": ProxyStatus.BANNED}], {}, [], ["p0"]),
    (
        "managed proxy of another provider",
        [{"type": "browserbase"}],
        {"proxy_types": ["browserbase"]},
        [],
        [],
    ),
    (
        "a bit of everything",
        [
            {},
            {"status": ProxyStatus.BANNED},
            {"active_sessions": 2, "max_sessions": 2},
            {"status": ProxyStatus.COOLDOWN, "cooldown_until": NOW + dt.timedelta(minutes=5)},
            {},
            {"type": "mobile"},
        ],
        {"blocked_proxies": ["p0"]},
        [],
        ["p4"],
    ),
]


@pytest.mark.parametrize(
    ("proxies", "fields", "exclude", "learned"),
    [case[1:] for case in NO_ROOM_CASES],
    ids=[case[0] for case in NO_ROOM_CASES],
)
def test_the_allocators_no_proxy_reason_and_the_explainer_count_the_same_causes(
    proxies: list[dict[str, Any]],
    fields: dict[str, Any],
    exclude: list[str],
    learned: list[str],
) -> None:
    factories.WorkerFactory(max_sessions=8)
    for i, kw in enumerate(proxies):
        _proxy(f"p{i}", **kw)
    for external_id in learned:
        _learned(external_id)
    site = SiteConfig(
        domain="x.com", **{"proxy_types": ["datacenter"], "max_sessions": 4, **fields}
    )
    mission = factories.MissionFactory(domain="x.com")

    with transaction.atomic():
        (allocation,) = allocate_many([Request(mission, 1, site, exclude)], NOW)
    constraint, room = explain.Explainer(NOW).proxies(site, "x.com", exclude)

    assert allocation.sessions == [] and allocation.wait_code == ErrorCode.ALLOC_NO_PROXY
    assert (constraint.ok, room) == (False, 0)
    rule = eligibility.ProxyRule.for_site(site, avoid=exclude)
    counted = eligibility.tally(rule, Proxy.objects.all(), NOW, _learned_ids())
    if counted.total == 0:
        assert allocation.wait_reason.endswith("cadastrado")
        assert constraint.message.endswith("cadastrado")
        return
    detail = eligibility.refusal_words(counted.causes, counted.total, "x.com")
    assert detail
    assert allocation.wait_reason.endswith(f", {detail}")
    assert constraint.message.endswith(f": {detail}")


def _learned_ids() -> set[int]:
    return set(ProxyDomainHealth.objects.values_list("proxy_id", flat=True))


def test_proxies_a_mission_leaves_out_are_not_called_blocked_for_the_site() -> None:
    """The wait reason of a mission whose items failed on every proxy says so, not
    "bloqueados para x.com": the proxies are blocked for nobody."""
    factories.WorkerFactory(max_sessions=8)
    for i in range(2):
        _proxy(f"p{i}")
    site = SiteConfig(domain="x.com", proxy_types=["datacenter"], max_sessions=4)
    mission = factories.MissionFactory(domain="x.com")

    with transaction.atomic():
        (allocation,) = allocate_many([Request(mission, 1, site, ["p0", "p1"])], NOW)
    constraint, _ = explain.Explainer(NOW).proxies(site, "x.com", ["p0", "p1"])

    for text in (allocation.wait_reason, constraint.message):
        assert text.endswith("2 já falharam nos itens desta missão"), text
        assert "bloqueados" not in text
