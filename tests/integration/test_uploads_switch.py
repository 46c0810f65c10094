"""`uploads_enabled` is wired: off, nothing is sent; on, each snapshot and the finished
mission's export reach the uploader once, and the links are kept (issue #21)."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from localnode.models import LocalBatch, LocalRecord
from orchestrator import uploads
from orchestrator.models import ItemEvidence, Mission, MissionItem
from orchestrator.states import ItemStatus, MissionStatus
from registry import config
from tests import factories
from tests.fakes.uploader import FakeUploader

pytestmark = pytest.mark.django_db


def _finished_mission_with_a_failure() -> tuple[Mission, ItemEvidence]:
    mission = factories.MissionFactory(status=MissionStatus.FINALIZADO)
    ok = MissionItem.objects.create(mission=mission, url="https://shop.example/p/1")
    bad = MissionItem.objects.create(
        mission=mission, url="https://shop.example/captcha/", status=ItemStatus.FAILED, attempts=1
    )
    now = timezone.now()
    batch = LocalBatch.objects.create(batch_key="up", mission_id=mission.pk, created_at=now)
    LocalRecord.objects.create(
        mission_id=mission.pk, item_id=str(ok.pk), batch=batch, data={"title": "A"}, created_at=now
    )
    ev = ItemEvidence.objects.create(
        item=bad, attempt=1, error_code="blocked", block_marker="captcha", captured_at=now
    )
    return mission, ev


def test_the_switch_turns_uploads_on(fake_uploader: FakeUploader) -> None:
    factories.UploaderFactory(
        base_url=fake_uploader.base_url, api_key=fake_uploader.api_key, enabled=True
    )
    mission, ev = _finished_mission_with_a_failure()
    assert uploads.run(config.load()) == 0  # off by default
    assert fake_uploader.files == {}

    config.set_value("uploads_enabled", True)
    assert uploads.run(config.load()) == 2
    snap_key = f"m{mission.pk}-i{ev.item_id}-a1-snapshot"
    export_key = f"m{mission.pk}-export"
    assert set(fake_uploader.files) == {snap_key, export_key}
    assert json.loads(fake_uploader.files[snap_key]["content"])["block_marker"] == "captcha"
    exported = fake_uploader.files[export_key]["content"].decode().splitlines()
    assert [json.loads(line)["data"]["title"] for line in exported] == ["A"]
    ev.refresh_from_db()
    mission.refresh_from_db()
    assert ev.upload_url.endswith(f"/f/{snap_key}")
    assert mission.export_upload_url.endswith(f"/f/{export_key}")
    assert uploads.run(config.load()) == 0  # once each


def test_an_uploader_outage_never_fails_the_mission(fake_uploader: FakeUploader) -> None:
    factories.UploaderFactory(
        base_url=fake_uploader.base_url, api_key=fake_uploader.api_key, enabled=True
    )
    config.set_value("uploads_enabled", True)
    for key, value in {"http_max_attempts": 1, "http_deadline_s": 2.0}.items():
        config.set_value(key, value)
    mission, _ = _finished_mission_with_a_failure()
    fake_uploader.unavailable = True
    assert uploads.run(config.load()) == 0
    mission.refresh_from_db()
    assert mission.status == MissionStatus.FINALIZADO and mission.export_upload_url == ""
    fake_uploader.unavailable = False
    assert uploads.run(config.load()) == 2  # retried on a later round
