"""Pacing through the whole engine (issue #20): two missions on one domain run by the
orchestrator in-process and the built-in worker against the demo catalogue served by
live_server, which timestamps every request it answers.

The domain has a per-minute budget and no explicit session cap. The budget is divided
between the domain's sessions through their pace (`site_rules.job_options`), and the
number of those sessions is bounded domain-wide by the cap the budget implies
(`site_rules.domain_cap`, enforced by the slot rows across missions and orchestrator
processes), so two missions cannot double the load.

Stated tolerance: a session's two requests arrive at least `delay_ms` - 20 ms apart
(time.sleep never wakes earlier than that); in any span of D seconds the domain sees at
most `max_requests_per_minute` * (D + 0.02) / 60 requests plus one per session (its
first request is not preceded by a pause)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from localnode import demo, politeness
from localnode import runner as local_runner
from orchestrator import actions
from orchestrator.models import BrowserSession, Mission, MissionItem
from orchestrator.runner import Orchestrator
from orchestrator.states import ItemStatus, MissionStatus
from registry import config, site_rules
from registry.models import SiteConfig
from tests import factories
from tests.integration.engine_helpers import FAST_CONFIG

pytestmark = [pytest.mark.urls("localnode.root_urls"), pytest.mark.django_db(transaction=True)]

KEY = "pacing-key"
TOLERANCE_S = 0.02
RPM = 240  # 4 requests a second on the domain, all missions together
MIN_DELAY_MS = 300


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    politeness.ROBOTS._rules.clear()
    demo.HITS.clear()
    yield


def test_two_missions_on_one_domain_keep_its_pace_and_its_per_minute_budget(
    live_server: Any, settings: Any
) -> None:
    settings.LOCALNODE_API_KEY = KEY
    for key, value in FAST_CONFIG.items():
        config.set_value(key, value)
    base = live_server.url
    factories.WorkerFactory(base_url=f"{base}/local/worker/api/v1", api_key=KEY, max_sessions=8)
    factories.WriterFactory(base_url=f"{base}/local/writer/api/v1", api_key=KEY, is_default=True)
    SiteConfig.objects.create(domain="*", proxy_types=[], items_per_job=3, respect_robots=False)
    domain = actions.domain_of(base)
    SiteConfig.objects.create(
        domain=domain, max_sessions=2, max_requests_per_minute=RPM, min_delay_ms=MIN_DELAY_MS
    )
    site = SiteConfig.for_domain(domain)
    delay_ms = site_rules.job_options(site)["delay_ms"]
    assert site_rules.domain_cap(site) == 2 and delay_ms == 500  # 60 000 * 2 / 240

    pages = [n for n in range(1, 40) if all(n % k for k in (37, 89, 97))]
    for m in range(2):
        actions.create_mission(
            name=f"Ritmo {m}", urls=[f"{base}/local/demo/p/{n}/" for n in pages[m * 8 : m * 8 + 8]]
        )
    orchestrator = Orchestrator(name="pacing", use_notify=False)
    for _ in range(200):
        orchestrator.run_once()
        local_runner.run_pending_jobs(max_workers=4)
        if not Mission.objects.exclude(status=MissionStatus.FINALIZADO).exists():
            break
    assert {m.status for m in Mission.objects.all()} == {MissionStatus.FINALIZADO}

    session_of = {
        "/" + url.split("/", 3)[3]: session
        for url, session in MissionItem.objects.filter(status=ItemStatus.DONE).values_list(
            "url", "session_id"
        )
    }
    with demo._hits_lock:
        hits = sorted((t, path) for path, t in demo.HITS if path in session_of)
    assert len(hits) == 16  # each page requested once
    by_session: dict[int, list[float]] = defaultdict(list)
    for t, path in hits:
        by_session[session_of[path]].append(t)

    # Both missions shared the domain's 2 slots: never more than 2 sessions on it.
    slots = set(BrowserSession.objects.filter(domain=domain).values_list("domain_slot", flat=True))
    assert slots and slots <= {0, 1}
    # Per session: at least delay_ms (>= min_delay_ms) between two requests.
    for times in by_session.values():
        for a, b in itertools.pairwise(times):
            assert b - a >= delay_ms / 1000 - TOLERANCE_S, (times, delay_ms)
    # Domain-wide: the per-minute budget over every span, plus one per session.
    times = [t for t, _ in hits]
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            span = times[j] - start
            allowed = RPM * (span + TOLERANCE_S) / 60 + len(by_session)
            assert j - i + 1 <= allowed, (times, i, j)
    # Without the implied cap each mission would have had 2 sessions of its own: 4
    # sessions at one request per 0.5 s, twice the budget.
    assert len(by_session) >= 2
