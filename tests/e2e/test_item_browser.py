"""The item page in a real Chromium (issue #21): from the mission's item list, a good
item shows its extracted record and a blocked one its evidence, with the screenshot
loaded from the data folder through the logged-in route (no console error, no failed
request, no serious axe violation)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from localnode.models import LocalBatch, LocalRecord
from mission_control import evidence_files
from orchestrator.models import ItemEvidence, MissionItem
from orchestrator.states import ItemStatus, MissionStatus
from tests import factories
from tests.e2e.conftest import Watched, wait_ready

pytestmark = [pytest.mark.browser]


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real, decodable PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def _seed() -> dict[str, Any]:
    now = timezone.now()
    viewer = factories.UserFactory(username="vera.viewer", role="viewer")
    mission = factories.MissionFactory(name="Catálogo demo", status=MissionStatus.FINALIZADO)
    good = MissionItem.objects.create(
        mission=mission,
        url="https://loja.example/p/1",
        status=ItemStatus.DONE,
        http_status=200,
        finished_at=now,
    )
    blocked = MissionItem.objects.create(
        mission=mission,
        url="https://loja.example/captcha/1",
        status=ItemStatus.FAILED,
        error_code="SCRAPE_BLOCKED",
        http_status=200,
        attempts=2,
        finished_at=now,
    )
    batch = LocalBatch.objects.create(batch_key="b-e2e", mission_id=mission.pk, created_at=now)
    LocalRecord.objects.create(
        mission_id=mission.pk,
        item_id=str(good.pk),
        batch=batch,
        data={"title": "Cafeteira Turbo", "price": "199,90"},
        created_at=now,
    )
    ItemEvidence.objects.create(
        item=blocked,
        attempt=2,
        error_code="blocked",
        http_status=200,
        block_marker="g-recaptcha",
        final_url=blocked.url,
        html_excerpt="<div class='g-recaptcha'></div>",
        screenshot_file=evidence_files.save_png(
            mission.pk, blocked.pk, 2, png(64, 40, (200, 30, 30))
        ),
        captured_at=now,
    )
    return {"viewer": viewer, "mission": mission, "good": good, "blocked": blocked}


def test_the_item_page_shows_the_record_and_the_evidence_screenshot(
    open_page: Callable[..., Watched],
    live_server: Any,
    axe: Callable[[Any], list[dict[str, Any]]],
) -> None:
    data = _seed()
    mission = data["mission"]
    w = open_page(data["viewer"])
    page = w.page
    page.goto(f"{live_server.url}/missoes/{mission.pk}/")
    wait_ready(page)
    row = page.locator("tr", has=page.locator("[data-item-link]", has_text="/p/1"))
    assert row.locator("[data-record-preview]").inner_text() == "Cafeteira Turbo"

    page.locator("[data-item-link]", has_text="/p/1").click()
    wait_ready(page)
    record = page.locator("[data-item-record]")
    assert "Cafeteira Turbo" in record.inner_text() and "199,90" in record.inner_text()
    assert axe(page) == []

    page.goto(f"{live_server.url}/missoes/{mission.pk}/")
    wait_ready(page)
    page.locator("[data-item-link]", has_text="/captcha/1").click()
    wait_ready(page)
    evidence = page.locator("[data-item-evidence]")
    assert evidence.locator("[data-block-marker]").inner_text() == "g-recaptcha"
    shot = evidence.locator("img[data-evidence-screenshot]")
    shot.wait_for(state="visible")
    page.wait_for_function("() => document.querySelector('img[data-evidence-screenshot]').complete")
    size = shot.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert size == [64, 40]  # the real file, decoded by the browser
    assert "data:image" not in (shot.get_attribute("src") or "")
    assert axe(page) == []
    assert w.problems() == []

    # Without a session the screenshot is not served.
    anonymous = open_page()
    answer = anonymous.page.request.get(f"{live_server.url}{shot.get_attribute('src')}")
    assert answer.status in (401, 403)
