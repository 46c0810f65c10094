"""The allocator and the explainer share one proxy rule (`orchestrator.eligibility`):
the database filter the allocator locks with and the per-row answer the explainer
counts agree on every proxy, and both size a group with `sessions_wanted`."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.utils import timezone

from orchestrator import eligibility, explain
from orchestrator.allocation import usable_proxies_q
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
