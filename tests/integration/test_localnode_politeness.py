"""The local worker honours the job's v1.1 options against the demo shop served by
live_server, counted by the demo itself: robots.txt (disallowed pages are never
requested and end `robots_disallowed`), `delay_ms` between two requests of a session,
a larger `Crawl-delay`, and the domain's per-minute budget spread over its sessions."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from localnode import demo, politeness, runner
from localnode.demo import demo_urls, private_urls
from localnode.models import LocalJob, LocalResult
from registry import site_rules
from registry.models import SiteConfig
from tests.integration.test_localnode_runner import open_job

pytestmark = [pytest.mark.urls("localnode.root_urls"), pytest.mark.django_db(transaction=True)]

# Timing tolerance: time.sleep never wakes early by more than this (lower bounds only:
# no upper bound on a shared machine).
TOLERANCE_S = 0.02


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    politeness.ROBOTS._rules.clear()
    demo.HITS.clear()
    demo.ROBOTS_CRAWL_DELAY = None
    yield
    demo.ROBOTS_CRAWL_DELAY = None


def outcome(job: LocalJob) -> dict[str, str]:
    return dict(LocalResult.objects.filter(job=job).values_list("url", "error_code"))


def products(base: str, numbers: range) -> list[str]:
    """Product pages no other test uses (another test's late request cannot count)."""
    return [f"{base}/local/demo/p/{n}/" for n in numbers]


def times_of(urls: list[str]) -> list[float]:
    paths = {"/" + u.split("/", 3)[3] for u in urls}
    with demo._hits_lock:
        return sorted(t for path, t in demo.HITS if path in paths)


def gaps(times: list[float]) -> list[float]:
    times = sorted(times)
    return [b - a for a, b in itertools.pairwise(times)]


def test_disallowed_pages_are_never_requested_and_end_robots_disallowed(live_server: Any) -> None:
    public, private = demo_urls(live_server.url, 2), private_urls(live_server.url, 2)
    job = open_job("rb-1", [*public, *private], options={"timeout_s": 10, "respect_robots": True})
    runner.run_pending_jobs()

    got = outcome(job)
    assert [got[u] for u in public] == ["", ""]
    assert [got[u] for u in private] == ["robots_disallowed", "robots_disallowed"]
    assert demo.hits(demo.PRIVATE_PREFIX) == []
    assert len(demo.hits("/robots.txt")) == 1  # fetched once, then cached
    assert len(times_of(public)) == 2


def test_without_respect_robots_the_private_pages_are_fetched(live_server: Any) -> None:
    job = open_job("rb-2", private_urls(live_server.url, 2), options={"timeout_s": 10})
    runner.run_pending_jobs()
    assert set(outcome(job).values()) == {""}
    assert len(demo.hits(demo.PRIVATE_PREFIX)) == 2
    assert demo.hits("/robots.txt") == []


def test_delay_ms_spaces_the_requests_of_a_session(live_server: Any) -> None:
    urls = products(live_server.url, range(251, 255))
    open_job("pace-1", urls, options={"timeout_s": 10, "delay_ms": 300})
    runner.run_pending_jobs()
    spaced = gaps(times_of(urls))
    assert len(spaced) == 3
    assert min(spaced) >= 0.3 - TOLERANCE_S, spaced


def test_a_larger_crawl_delay_wins(live_server: Any) -> None:
    demo.ROBOTS_CRAWL_DELAY = 0.4
    urls = products(live_server.url, range(261, 264))
    open_job("cd-1", urls, options={"timeout_s": 10, "delay_ms": 100, "respect_robots": True})
    runner.run_pending_jobs()
    spaced = gaps(times_of(urls))
    assert len(spaced) == 2
    assert min(spaced) >= 0.4 - TOLERANCE_S, spaced


def test_the_domain_budget_holds_over_all_its_sessions(live_server: Any) -> None:
    # 2 sessions at most on the domain, 120 requests a minute: each session waits 1 s.
    rule = SiteConfig(
        domain="*", max_concurrent_sessions=2, max_requests_per_minute=120, respect_robots=False
    )
    options = {"timeout_s": 10, **site_rules.job_options(rule)}
    assert options["delay_ms"] == 1000
    urls = products(live_server.url, range(271, 277))
    open_job("bd-1", urls[:3], options=options)
    open_job("bd-2", urls[3:], options=options)
    runner.run_pending_jobs(max_workers=2)

    times = times_of(urls)
    assert len(times) == 6
    # Stated tolerance: in any span of D seconds the domain sees at most
    # 120 * D / 60 requests plus one per session (each session's first).
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            span = times[j] - start
            assert j - i + 1 <= 120 * (span + TOLERANCE_S) / 60 + 2, (times, i, j)
