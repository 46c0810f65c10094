"""`make run`'s demo shows robots.txt at work (issue #20): the bootstrap command queues
the demo missions (the last one includes pages the demo catalogue's robots.txt
disallows), the orchestrator runs them in-process against the built-in worker and the
demo served by live_server, and those pages end `SCRAPE_ROBOTS_DISALLOWED` without the
demo ever being asked for them."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command

from localnode import demo, engines, politeness
from localnode import runner as local_runner
from orchestrator import actions
from orchestrator.models import ItemEvidence, Mission, MissionItem
from orchestrator.runner import Orchestrator
from orchestrator.states import ErrorCode, ItemStatus, MissionStatus
from registry import config
from registry.models import SiteConfig
from tests.integration.engine_helpers import FAST_CONFIG

pytestmark = [pytest.mark.urls("localnode.root_urls"), pytest.mark.django_db(transaction=True)]

ENDED = (MissionStatus.FINALIZADO, MissionStatus.ERRO, MissionStatus.CANCELADO)


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    politeness.ROBOTS._rules.clear()
    demo.HITS.clear()
    yield


def test_the_bootstrap_demo_refuses_the_pages_robots_txt_disallows(
    live_server: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo as seeded without Chromium (HTTP engine): robots.txt is read before any
    # engine, and `test_demo_evidence` drives the browser demo.
    monkeypatch.setattr(engines, "browser_unavailable_reason", lambda: "no Chromium here")
    settings.LOCALNODE_ENABLED = True
    settings.LOCALNODE_API_KEY = "demo-robots-key"
    call_command("bootstrap", base_url=live_server.url, stdout=io.StringIO())
    for key, value in FAST_CONFIG.items():
        config.set_value(key, value)

    assert SiteConfig.for_domain(actions.domain_of(live_server.url)).engine == "http"

    private = MissionItem.objects.filter(url__contains=demo.PRIVATE_PREFIX)
    assert private.count() == 3  # the demo includes robots-disallowed pages
    mission = Mission.objects.get(pk=private.values_list("mission_id", flat=True)[0])

    orchestrator = Orchestrator(name="demo", use_notify=False)
    for _ in range(300):
        orchestrator.run_once()
        local_runner.run_pending_jobs(max_workers=2)
        if Mission.objects.get(pk=mission.pk).status in ENDED:
            break
    mission.refresh_from_db()
    assert mission.status in ENDED, mission.status

    refused = list(private.values_list("status", "error_code", "attempts"))
    assert refused == [(ItemStatus.FAILED, ErrorCode.SCRAPE_ROBOTS_DISALLOWED, 1)] * 3
    assert demo.hits(demo.PRIVATE_PREFIX) == []  # never requested
    assert demo.hits("/robots.txt")  # the worker read robots.txt
    done = MissionItem.objects.filter(mission=mission, status=ItemStatus.DONE).count()
    assert done > 0
    blocked = ItemEvidence.objects.filter(item__mission=mission, error_code="blocked")
    assert blocked.count() == 2 and not blocked.exclude(screenshot_file="").exists()
