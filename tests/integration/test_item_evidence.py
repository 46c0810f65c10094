"""The orchestrator keeps each failed item's last snapshot, scrubbed (issue #21)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from localnode.models import LocalBatch, LocalRecord
from mission_control import evidence_files
from orchestrator import actions
from orchestrator.models import ItemEvidence, MissionItem
from orchestrator.states import TERMINAL, ItemStatus
from tests import factories
from tests.fakes.worker import FAKE_PNG_BASE64, FakeWorker
from tests.fakes.writer import FakeWriter
from tests.integration.engine_helpers import build_fleet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.xdist_group("engine")]


def test_failed_items_keep_their_scrubbed_snapshot(
    fake_worker: FakeWorker, fake_writer: FakeWriter, viewer_api: APIClient
) -> None:
    fake_worker.snapshots = True
    fleet = build_fleet(fake_worker, fake_writer, overrides={"max_item_attempts": 1})
    urls = [
        "https://shop.example/p/1",
        "https://shop.example/captcha/1",
        "https://shop.example/status/404/",
    ]
    mission = actions.create_mission(name="Evidência", urls=urls)
    fleet.drive_to(mission, *TERMINAL)
    items = {i.url: i for i in MissionItem.objects.filter(mission=mission)}
    assert items[urls[0]].status == ItemStatus.DONE
    assert not ItemEvidence.objects.filter(item=items[urls[0]]).exists()
    blocked = ItemEvidence.objects.get(item=items[urls[1]])
    assert blocked.error_code == "blocked" and blocked.block_marker == "g-recaptcha"
    assert blocked.final_url == "https://***:***@shop.example/captcha/1"
    assert blocked.headers == {"Content-Type": "text/html"}
    # The screenshot is a file in the data folder; the row holds only its path.
    assert blocked.screenshot_file.endswith(".png") and "base64" not in blocked.screenshot_file
    assert evidence_files.read(blocked.screenshot_file) == base64.b64decode(FAKE_PNG_BASE64)
    missing = ItemEvidence.objects.get(item=items[urls[2]])
    assert (missing.error_code, missing.http_status) == ("http_error", 404)

    body = viewer_api.get(f"/api/missions/{mission.pk}/items/{items[urls[1]].pk}/").json()
    assert body["evidence"]["block_marker"] == "g-recaptcha"
    shot_url = body["evidence"]["screenshot_url"]
    assert shot_url == f"/api/missions/{mission.pk}/items/{items[urls[1]].pk}/screenshot/"
    assert "screenshot_png_base64" not in body["evidence"]
    shot = viewer_api.get(shot_url)
    assert shot.status_code == 200 and shot["Content-Type"] == "image/png"
    assert b"".join(shot.streaming_content) == base64.b64decode(FAKE_PNG_BASE64)
    assert APIClient().get(shot_url).status_code in (401, 403)  # logged-in users only
    assert "secret" not in str(body)


def test_the_item_page_shows_the_record_and_the_evidence(
    login: Callable[..., Client],
) -> None:
    mission = factories.MissionFactory()
    ok = MissionItem.objects.create(
        mission=mission, url="https://shop.example/p/1", status=ItemStatus.DONE
    )
    bad = MissionItem.objects.create(
        mission=mission, url="https://shop.example/captcha/", status=ItemStatus.FAILED
    )
    now = timezone.now()
    batch = LocalBatch.objects.create(batch_key="b21", mission_id=mission.pk, created_at=now)
    LocalRecord.objects.create(
        mission_id=mission.pk,
        item_id=str(ok.pk),
        batch=batch,
        data={"title": "Cafeteira <Turbo>"},
        created_at=now,
    )
    ItemEvidence.objects.create(
        item=bad,
        attempt=2,
        error_code="blocked",
        http_status=200,
        block_marker="g-recaptcha",
        html_excerpt="<div class='g-recaptcha'></div>",
        screenshot_file=evidence_files.save_png(
            mission.pk, bad.pk, 2, base64.b64decode(FAKE_PNG_BASE64)
        ),
        captured_at=now,
    )
    client = login("viewer")
    listing = client.get(f"/missoes/{mission.pk}/").content.decode()
    assert f"/missoes/{mission.pk}/itens/{bad.pk}/" in listing
    good = client.get(f"/missoes/{mission.pk}/itens/{ok.pk}/").content.decode()
    assert "Cafeteira &lt;Turbo&gt;" in good and "Nenhuma evidência guardada" in good
    failed = client.get(f"/missoes/{mission.pk}/itens/{bad.pk}/").content.decode()
    shot_url = f"/api/missions/{mission.pk}/items/{bad.pk}/screenshot/"
    assert "data-evidence-screenshot" in failed and f'src="{shot_url}"' in failed
    assert FAKE_PNG_BASE64 not in failed
    assert client.get(shot_url)["Content-Type"] == "image/png"
    assert 'data-record-preview title="Cafeteira &lt;Turbo&gt;"' in listing
    assert "g-recaptcha" in failed and "Evidência da última falha" in failed
    assert client.get(f"/missoes/{mission.pk}/itens/999999/").status_code == 404
