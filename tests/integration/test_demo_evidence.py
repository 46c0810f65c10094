"""`make run`'s demo shows the data and the evidence (issue #21, "Done when"): with
Chromium on the machine, `bootstrap` gives the demo's host a site rule on the browser
engine, so the demo mission's blocked pages end with a screenshot of the block, and its
good pages with their extracted record. The orchestrator runs in-process against the
built-in worker and the demo served by live_server, as `test_demo_robots` does."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from localnode import demo, engines, politeness
from localnode import runner as local_runner
from mission_control import evidence_files
from orchestrator import actions
from orchestrator.models import ItemEvidence, Mission, MissionItem
from orchestrator.runner import Orchestrator
from orchestrator.serializers import MissionItemDetailSerializer
from orchestrator.states import ErrorCode, ItemStatus, MissionStatus
from registry import config
from registry.models import SiteConfig
from tests.integration.engine_helpers import FAST_CONFIG

pytestmark = [
    pytest.mark.urls("localnode.root_urls"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.browser,
    pytest.mark.skipif(
        engines.browser_unavailable_reason() is not None,
        reason=f"browser engine unavailable: {engines.browser_unavailable_reason()}",
    ),
]

ENDED = (MissionStatus.FINALIZADO, MissionStatus.ERRO, MissionStatus.CANCELADO)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    politeness.ROBOTS._rules.clear()
    demo.HITS.clear()
    yield


def _blocked(n: int) -> bool:
    return n % demo.THROTTLED_EVERY == 0 or n % demo.FORBIDDEN_EVERY == 0


def test_the_demo_keeps_a_screenshot_of_each_blocked_page_and_each_good_pages_record(
    live_server: Any, settings: Any, tmp_path: Path
) -> None:
    settings.LOCALNODE_ENABLED = True
    settings.LOCALNODE_API_KEY = "demo-evidence-key"
    settings.EVIDENCE_DIR = tmp_path / "evidence"
    call_command("bootstrap", base_url=live_server.url, stdout=io.StringIO())
    for key, value in FAST_CONFIG.items():
        config.set_value(key, value)
    assert SiteConfig.for_domain(actions.domain_of(live_server.url)).engine == "browser"

    blocked_urls = [u for n, u in enumerate(demo.demo_urls(live_server.url, 120), 1) if _blocked(n)]
    blocked = MissionItem.objects.filter(url__in=blocked_urls)
    assert blocked.count() == 2  # products 89 (403) and 97 (429)
    mission = Mission.objects.get(pk=blocked.values_list("mission_id", flat=True).distinct().get())
    # The other demo missions have no blocked page: spare the machine their browsers.
    Mission.objects.exclude(pk=mission.pk).delete()

    orchestrator = Orchestrator(name="demo", use_notify=False)
    for _ in range(300):
        orchestrator.run_once()
        local_runner.run_pending_jobs(max_workers=2)
        if Mission.objects.get(pk=mission.pk).status in ENDED:
            break
    mission.refresh_from_db()
    assert mission.status in ENDED, mission.status

    for item in blocked:
        assert (item.status, item.error_code) == (ItemStatus.FAILED, ErrorCode.SCRAPE_BLOCKED)
        shown = MissionItemDetailSerializer(item).data
        assert shown["record"] is None
        assert shown["evidence"]["error_code"] == "blocked"
        assert shown["evidence"]["screenshot_url"] == (
            f"/api/missions/{mission.pk}/items/{item.pk}/screenshot/"
        )
        ev = ItemEvidence.objects.get(item=item)
        assert (evidence_files.read(ev.screenshot_file) or b"").startswith(PNG)

    good = list(MissionItem.objects.filter(mission=mission, status=ItemStatus.DONE))
    assert len(good) == 35  # products 81..117 but the 2 blocked; 3 robots-disallowed
    for item in good:
        shown = MissionItemDetailSerializer(item).data
        product = demo.product(int(item.url.rstrip("/").rsplit("/", 1)[1]))
        assert shown["evidence"] is None
        assert shown["record"]["title"] == f"{product['name']} | Loja Demo", item.url
        assert shown["record"]["json_ld"][0]["sku"] == product["sku"]
