"""The site breaker's batch entry point (`site_breaker.record_many_results`): one call
for the pages of a round must leave every domain's breaker as separate
`record_results` calls would."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator import events, site_breaker
from orchestrator.models import DomainBreaker
from registry import config

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
Counts = dict[str, tuple[int, int]]
Seed = dict[str, dict[str, Any]]


@pytest.fixture(autouse=True)
def _no_leftover_wakeups() -> Iterator[None]:
    # Trips publish `domain.paused` inside the test's rolled-back transaction; drop the
    # NOTIFY wake-ups they queue so later transactional tests see only their own.
    yield
    events._pending.wake.clear()


def closed(minutes_ago: int, results: int, blocked: int) -> dict[str, Any]:
    return {
        "state": DomainBreaker.State.CLOSED,
        "window_started_at": NOW - dt.timedelta(minutes=minutes_ago),
        "results": results,
        "blocked": blocked,
    }


def rows() -> dict[str, tuple[Any, ...]]:
    return {
        b.domain: (
            b.state,
            b.results,
            b.blocked,
            b.window_started_at,
            b.trips,
            b.paused_until,
            b.reason,
            b.opened_at,
        )
        for b in DomainBreaker.objects.all()
    }


def outcome(seed: Seed, counts: Counts, *, batch: bool) -> dict[str, tuple[Any, ...]]:
    """The breakers after `counts` reach them from `seed`, in one batch or one call
    per domain; the table is emptied again afterwards."""
    DomainBreaker.objects.bulk_create(
        DomainBreaker(domain=d, updated_at=NOW - dt.timedelta(minutes=1), **kw)
        for d, kw in seed.items()
    )
    cfg = config.load()
    if batch:
        site_breaker.record_many_results(counts, NOW, cfg)
    else:
        for domain, (results, blocked) in counts.items():
            site_breaker.record_results(domain, results, blocked, NOW, cfg)
    after = rows()
    DomainBreaker.objects.all().delete()
    return after


def test_a_batch_counts_as_separate_calls_do() -> None:
    seed: Seed = {
        "warm.com": closed(2, 5, 1),
        "stale.com": closed(11, 15, 10),
        "probe.com": {
            "state": DomainBreaker.State.OPEN,
            "paused_until": NOW - dt.timedelta(minutes=1),
            "opened_at": NOW - dt.timedelta(minutes=16),
            "trips": 1,
            "reason": "antes",
        },
    }
    counts: Counts = {
        "www.warm.com": (4, 2),
        "warm.com": (1, 0),
        "stale.com": (5, 5),
        "probe.com": (5, 0),
        "www.new.com": (3, 1),
        "New.com.": (2, 0),
        "idle.com": (0, 0),
        "www.idle.com": (0, 2),
    }

    batch = outcome(seed, counts, batch=True)

    assert batch == outcome(seed, counts, batch=False)
    assert set(batch) == {"warm.com", "stale.com", "probe.com", "new.com"}  # no idle.com
    assert batch["warm.com"][:4] == ("closed", 10, 3, NOW - dt.timedelta(minutes=2))
    assert batch["new.com"][:4] == ("closed", 5, 1, NOW)
    # The expired window starts again: 5 of 5 blocked is below the minimum to judge,
    # where the old window's 15 + 5 results would have tripped it.
    assert batch["stale.com"][:5] == ("closed", 5, 5, NOW, 0)
    # The cool-down was over: these results were the probe, which passed.
    assert batch["probe.com"][:3] == ("closed", 0, 0)
    assert batch["probe.com"][5:7] == (None, "")


def test_a_batch_trips_only_the_domain_over_the_block_rate() -> None:
    seed: Seed = {"bad.com": closed(1, 15, 8), "ok.com": closed(1, 15, 2)}
    counts: Counts = {"www.bad.com": (5, 5), "ok.com": (5, 1), "fresh.com": (30, 3)}

    batch = outcome(seed, counts, batch=True)

    assert batch == outcome(seed, counts, batch=False)
    state, results, blocked, window, trips, paused_until, reason, opened_at = batch["bad.com"]
    assert (state, trips, opened_at, paused_until) == (
        "open",
        1,
        NOW,
        NOW + dt.timedelta(minutes=15),
    )
    assert reason == "65% dos resultados bloqueados (13 de 20) em 10 min"
    assert (results, blocked, window) == (0, 0, NOW)
    assert batch["ok.com"][:3] == ("closed", 20, 3)
    assert batch["fresh.com"][:3] == ("closed", 30, 3)


def test_the_tripped_domain_is_paused_and_the_others_are_not() -> None:
    DomainBreaker.objects.create(domain="bad.com", updated_at=NOW, **closed(1, 19, 10))
    DomainBreaker.objects.create(domain="ok.com", updated_at=NOW, **closed(1, 19, 0))

    site_breaker.record_many_results(
        {"bad.com": (1, 1), "ok.com": (1, 1), "brand-new.com": (25, 20)}, NOW, config.load()
    )

    reasons = site_breaker.paused_reasons(["bad.com", "www.bad.com", "ok.com"], NOW)
    assert reasons["bad.com"] and reasons["www.bad.com"] == reasons["bad.com"]
    assert "pausado pelo disjuntor" in reasons["bad.com"]
    assert reasons["ok.com"] == ""
    # A domain first seen in the batch trips as well (its first page is the window).
    assert site_breaker.paused_reason("brand-new.com", NOW) != ""
    assert DomainBreaker.objects.get(domain="brand-new.com").trips == 1


def test_a_batch_of_one_domain_or_nothing() -> None:
    DomainBreaker.objects.create(domain="solo.com", updated_at=NOW, **closed(1, 10, 9))
    cfg = config.load()

    site_breaker.record_many_results({}, NOW, cfg)
    site_breaker.record_many_results({"www.zero.com": (0, 0)}, NOW, cfg)
    assert list(DomainBreaker.objects.values_list("domain", flat=True)) == ["solo.com"]

    site_breaker.record_many_results({"www.solo.com": (10, 10)}, NOW, cfg)

    row = DomainBreaker.objects.get(domain="solo.com")
    assert (row.state, row.trips) == ("open", 1)
    assert row.reason == "95% dos resultados bloqueados (19 de 20) em 10 min"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="one statement on PostgreSQL")
def test_domains_first_seen_are_created_counted_in_one_statement() -> None:
    DomainBreaker.objects.create(domain="known.com", updated_at=NOW, **closed(1, 2, 0))
    counts: Counts = {f"www.d{i}.com": (3, 1) for i in range(30)}
    counts["known.com"] = (1, 0)
    cfg = config.load()

    with CaptureQueriesContext(connection) as statements:
        site_breaker.record_many_results(counts, NOW, cfg)

    assert len(statements.captured_queries) == 2  # the known row counted, the others created
    after = rows()
    assert after["known.com"][:3] == ("closed", 3, 0)
    assert {after[f"d{i}.com"][:5] for i in range(30)} == {("closed", 3, 1, NOW, 0)}


def test_a_row_created_meanwhile_by_another_process_takes_the_locked_path() -> None:
    # Between the fast count (no row yet) and the creation, another process created it.
    cfg = config.load()
    fast = site_breaker._count_fast

    def count_then_race(counts: Counts, now: dt.datetime, since: dt.datetime) -> Counts:
        out = fast(counts, now, since)
        if "race.com" in counts and not DomainBreaker.objects.filter(domain="race.com").exists():
            DomainBreaker.objects.create(domain="race.com", updated_at=NOW, **closed(1, 4, 0))
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(site_breaker, "_count_fast", count_then_race)
        site_breaker.record_many_results({"race.com": (2, 1)}, NOW, cfg)

    assert rows()["race.com"][:3] == ("closed", 6, 1)
