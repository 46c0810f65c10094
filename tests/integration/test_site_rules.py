"""Site rules resolved field by field: subdomain -> parent domain -> `*` -> code
default; the import, the API and the form carry the load-control fields."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from dashboard.forms import SiteConfigForm
from registry import importers, site_rules
from registry.models import SiteConfig, rule_chain

pytestmark = pytest.mark.django_db


def test_the_chain_goes_from_the_most_specific_name_to_star() -> None:
    assert rule_chain("a.Shop.example.com.") == [
        "a.shop.example.com",
        "shop.example.com",
        "example.com",
        "*",
    ]
    assert rule_chain("www.example.com") == ["example.com", "*"]
    assert rule_chain("*") == ["*"]


def test_a_resolved_rule_shares_no_list_or_dict_with_its_rows_or_the_defaults() -> None:
    from registry.models import RULE_DEFAULTS, resolve_rule_from_rows

    star = SiteConfig(domain="*", countries=["BR"], headers={"A": "b"}, user_agent="MC/1")
    rows = {"*": star}
    first = resolve_rule_from_rows("shop.example.com", rows)
    first.countries.append("US")
    first.headers.update(C="d")  # type: ignore[union-attr]
    first.proxy_types.append("residential")  # from the code defaults
    again = resolve_rule_from_rows("shop.example.com", rows)
    assert (again.countries, again.headers, again.proxy_types) == (["BR"], {"A": "b"}, [])
    assert (star.countries, RULE_DEFAULTS["proxy_types"]) == (["BR"], [])
    assert again.user_agent == "MC/1"


def test_each_field_falls_back_to_the_parent_then_star_then_the_default() -> None:
    SiteConfig.objects.create(
        domain="*", max_concurrent_sessions=10, min_delay_ms=100, user_agent="MC/1"
    )
    SiteConfig.objects.create(domain="example.com", max_concurrent_sessions=4, max_sessions=2)
    SiteConfig.objects.create(domain="shop.example.com", min_delay_ms=750, headers={"A": "b"})

    shop = SiteConfig.for_domain("shop.example.com")

    assert (shop.max_concurrent_sessions, shop.min_delay_ms, shop.user_agent) == (4, 750, "MC/1")
    assert shop.headers == {"A": "b"}
    assert shop.respect_robots is True  # nobody set it: the code default
    assert shop.max_requests_per_minute is None
    assert shop.rule_domain == "shop.example.com"  # type: ignore[attr-defined]
    load = ["max_concurrent_sessions", "min_delay_ms", "max_requests_per_minute"]
    load += ["respect_robots", "user_agent", "headers"]
    assert {k: shop.sources[k] for k in load} == {  # type: ignore[attr-defined]
        "max_concurrent_sessions": "example.com",
        "min_delay_ms": "shop.example.com",
        "max_requests_per_minute": "padrão",
        "respect_robots": "padrão",
        "user_agent": "*",
        "headers": "shop.example.com",
    }
    # A subdomain without a row of its own uses its parent's row, not `*`'s.
    other = SiteConfig.for_domain("www.other.example.com")
    assert other.rule_domain == "example.com"  # type: ignore[attr-defined]
    assert (other.max_sessions, other.max_concurrent_sessions, other.min_delay_ms) == (2, 4, 100)
    # An unrelated domain gets `*`.
    assert SiteConfig.for_domain("unrelated.org").max_concurrent_sessions == 10
    # Resolution never writes back into the stored rows.
    assert SiteConfig.objects.get(domain="shop.example.com").max_concurrent_sessions is None


# Older settings, one per row: (field, the parent's value, `*`'s value, code default).
OLDER_FIELDS = [
    ("proxy_types", ["residential"], ["datacenter"], []),
    ("countries", ["BR"], ["US"], []),
    ("blocked_proxies", ["px-1"], ["px-9"], []),
    ("max_sessions", 2, 7, 4),
    ("items_per_job", 5, 30, 50),
    ("job_timeout_s", 20, 90, 60),
    ("session_timeout_s", 300, 600, 900),
    ("engine", "browser", "http", "http"),
    ("providers", ["browserbase"], ["local"], []),
    ("selectors", {"price": ".p"}, {"name": "h1"}, {}),
    ("quality_rules", {"min_success_ratio": 0.9}, {"min_success_ratio": 0.5}, {}),
    ("require_verified_geo", True, False, False),
]


@pytest.mark.parametrize(("field", "parent", "star", "default"), OLDER_FIELDS)
def test_each_older_field_inherits_from_the_parent_then_star_then_the_default(
    field: str, parent: object, star: object, default: object
) -> None:
    """Issue #20: `shop.example.com`'s row sets something else, so before this it took
    the field from its own row (the model default) and never from `example.com`."""
    SiteConfig.objects.create(domain="shop.example.com", min_delay_ms=5)
    assert getattr(SiteConfig.for_domain("shop.example.com"), field) == default
    assert SiteConfig.for_domain("shop.example.com").sources[field] == "padrão"  # type: ignore[attr-defined]

    SiteConfig.objects.create(domain="*", **{field: star})
    assert getattr(SiteConfig.for_domain("shop.example.com"), field) == star
    SiteConfig.objects.create(domain="example.com", **{field: parent})
    shop = SiteConfig.for_domain("shop.example.com")
    assert getattr(shop, field) == parent
    assert shop.sources[field] == "example.com"  # type: ignore[attr-defined]
    assert shop.rule_domain == "shop.example.com"  # type: ignore[attr-defined]
    # A value of its own wins; the other fields still come from up the chain.
    SiteConfig.objects.filter(domain="shop.example.com").update(**{field: star})
    assert getattr(SiteConfig.for_domain("shop.example.com"), field) == star
    assert SiteConfig.for_domain("shop.example.com").min_delay_ms == 5


def test_an_explicit_empty_list_overrides_the_parent_restriction() -> None:
    SiteConfig.objects.create(domain="example.com", proxy_types=["residential"], countries=["BR"])
    SiteConfig.objects.create(domain="shop.example.com", proxy_types=[])
    shop = SiteConfig.for_domain("shop.example.com")
    assert shop.proxy_types == [] and shop.countries == ["BR"]


def test_the_api_and_the_form_leave_older_fields_to_inherit(admin_api: APIClient) -> None:
    created = admin_api.post(
        "/api/site-configs/", {"domain": "shop.example.com", "max_sessions": 3}, format="json"
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["proxy_types"] is None and body["items_per_job"] is None
    assert body["max_sessions"] == 3
    form = SiteConfigForm(data={"domain": "loja.example.com", "enabled": "on"})
    assert form.is_valid(), form.errors
    row = form.save()
    assert (row.proxy_types, row.countries, row.max_sessions, row.engine) == (None, None, None, "")


def test_without_any_row_the_code_defaults_apply() -> None:
    site = SiteConfig.for_domain("x.com")
    assert (site.max_concurrent_sessions, site.min_delay_ms, site.respect_robots) == (None, 0, True)
    assert site_rules.describe(site) == "regra padrão"
    assert site_rules.rule_of(site)["rule"] == "padrão"


def test_describe_names_where_the_domain_cap_came_from() -> None:
    SiteConfig.objects.create(domain="*", max_concurrent_sessions=3)
    SiteConfig.objects.create(domain="example.com")
    site = SiteConfig.for_domain("example.com")
    assert site_rules.describe(site) == "regra example.com (limite do domínio herdado de *)"


def test_the_import_reads_the_load_control_fields() -> None:
    parsed = importers.parse_strategies(
        {
            "default": {"maxConcurrentSessions": 8, "respectRobots": True},
            "domains": {
                "shop.com": {
                    "maxConcurrentSessions": 3,
                    "minDelayMs": 500,
                    "maxRequestsPerMinute": 60,
                    "respectRobots": False,
                    "userAgent": "Bot/2",
                    "headers": {"Accept-Language": "pt-BR"},
                }
            },
        }
    )
    assert parsed.errors == []
    importers.apply_strategies(parsed.rows)
    shop = SiteConfig.objects.get(domain="shop.com")
    assert (shop.max_concurrent_sessions, shop.min_delay_ms, shop.max_requests_per_minute) == (
        3,
        500,
        60,
    )
    assert (shop.respect_robots, shop.user_agent, shop.headers) == (
        False,
        "Bot/2",
        {"Accept-Language": "pt-BR"},
    )
    assert SiteConfig.objects.get(domain="*").max_concurrent_sessions == 8


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"maxConcurrentSessions": 0}, "maxConcurrentSessions"),
        ({"minDelayMs": -1}, "minDelayMs"),
        ({"headers": {"Bad Name": "x"}}, "headers"),
        ({"headers": {"X": "a\r\nb"}}, "headers"),
        ({"respectRobots": "maybe"}, "respectRobots"),
    ],
)
def test_the_import_refuses_bad_load_control_values(entry: dict[str, object], field: str) -> None:
    parsed = importers.parse_strategies({"domains": {"x.com": entry}})
    assert parsed.rows == []
    assert field in parsed.errors[0].errors


def test_the_api_reads_and_writes_the_fields(admin_api: APIClient) -> None:
    response = admin_api.post(
        "/api/site-configs/",
        {"domain": "api.com", "max_concurrent_sessions": 2, "headers": {"X-A": "1"}},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["max_concurrent_sessions"] == 2
    bad = admin_api.post(
        "/api/site-configs/", {"domain": "bad.com", "headers": {"X": 1}}, format="json"
    )
    assert bad.status_code == 400
    assert "headers" in str(bad.json())


def test_the_form_validates_headers() -> None:
    form = SiteConfigForm(
        data={
            "domain": "form.com",
            "max_sessions": 4,
            "items_per_job": 50,
            "job_timeout_s": 60,
            "session_timeout_s": 900,
            "engine": "http",
            "headers": '{"X": "a\\nb"}',
            "max_concurrent_sessions": 3,
            "enabled": "on",
        }
    )
    assert not form.is_valid()
    assert "headers" in form.errors


def test_job_options_carry_pace_robots_and_headers() -> None:
    SiteConfig.objects.create(domain="*", user_agent="MC/1", headers={"Accept-Language": "pt-BR"})
    SiteConfig.objects.create(domain="a.com", min_delay_ms=200, respect_robots=False)
    assert site_rules.job_options(SiteConfig.for_domain("a.com")) == {
        "delay_ms": 200,
        "respect_robots": False,
        "headers": {"Accept-Language": "pt-BR", "User-Agent": "MC/1"},
    }
    # 3 sessions at most on the domain, 60 requests a minute in all: 3 s between two
    # requests of one session keeps the domain within its budget.
    SiteConfig.objects.create(domain="b.com", max_concurrent_sessions=3, max_requests_per_minute=60)
    options = site_rules.job_options(SiteConfig.for_domain("b.com"))
    assert (options["delay_ms"], options["respect_robots"]) == (3000, True)
