"""Retention: old rows pruned in batches by `manage.py prune` and the django-q2 task."""

from __future__ import annotations

import datetime as dt
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import Schedule

from orchestrator import events, retention
from orchestrator.models import (
    BrowserSession,
    ItemEvidence,
    Mission,
    MissionEvent,
    MissionItem,
    RecurringMission,
    ScheduleRun,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from orchestrator.states import MissionStatus
from registry import config
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_leftover_wakeups() -> Iterator[None]:
    # Events published inside a test's rolled-back transaction leave NOTIFY wake-ups
    # queued on the thread; drop them so later transactional tests see only their own.
    yield
    events._pending.wake.clear()


NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def days_ago(n: float) -> dt.datetime:
    return NOW - dt.timedelta(days=n)


def old_finished_mission(n_items: int = 5, age_days: float = 100) -> Mission:
    mission = factories.MissionFactory(status=MissionStatus.FINALIZADO, n_items=n_items)
    Mission.objects.filter(pk=mission.pk).update(updated_at=days_ago(age_days))
    factories.MissionEventFactory.create_batch(3, mission=mission, created_at=days_ago(age_days))
    factories.BrowserSessionFactory(mission=mission, status="closed")
    BrowserSession.objects.filter(mission=mission).update(updated_at=days_ago(age_days))
    return mission


def test_it_prunes_only_what_is_past_retention_in_batches() -> None:
    old = old_finished_mission(n_items=5)
    recent = old_finished_mission(n_items=2, age_days=5)
    running = factories.MissionFactory(status=MissionStatus.EXTRAINDO, n_items=3)
    Mission.objects.filter(pk=running.pk).update(updated_at=days_ago(400))
    factories.MissionEventFactory(mission=running, created_at=days_ago(400))
    live = factories.BrowserSessionFactory(mission=running, status="busy", holds_slot=True)
    BrowserSession.objects.filter(pk=live.pk).update(updated_at=days_ago(400))
    seen: list[tuple[str, int, int]] = []

    totals = retention.prune(NOW, batch_size=2, progress=lambda *a: seen.append(a))

    assert totals["events"] == 3
    assert totals["items"] == 5
    assert totals["sessions"] == 1
    assert [s for s in seen if s[0] == "items"] == [
        ("items", 2, 2),
        ("items", 2, 4),
        ("items", 1, 5),
    ]
    assert not MissionItem.objects.filter(mission=old).exists()
    assert not MissionEvent.objects.filter(mission=old).exists()
    assert MissionItem.objects.filter(mission=recent).count() == 2
    assert MissionEvent.objects.filter(mission=recent).count() == 3
    assert MissionItem.objects.filter(mission=running).count() == 3
    assert MissionEvent.objects.filter(mission=running).exists()
    assert BrowserSession.objects.filter(pk=live.pk).exists()
    old.refresh_from_db()
    assert old.total_items == 5  # counters stay on the mission
    assert retention.prune(NOW, batch_size=2) == dict.fromkeys(retention.TARGET_NAMES, 0)


def test_ages_come_from_config() -> None:
    mission = old_finished_mission(n_items=2, age_days=10)
    config.set_value("retention_items_days", 7)

    assert retention.count_due(NOW)["items"] == 2
    assert retention.count_due(NOW)["events"] == 0  # 90 days by default
    retention.prune(NOW, only=("items",))
    assert not MissionItem.objects.filter(mission=mission).exists()
    assert MissionEvent.objects.filter(mission=mission).count() == 3


def test_each_batch_is_one_bounded_delete() -> None:
    old_finished_mission(n_items=7)
    with CaptureQueriesContext(connection) as ctx:
        retention.prune(NOW, batch_size=3, only=("items",))
    deletes = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("DELETE")]
    items = [sql for sql in deletes if sql.startswith('DELETE FROM "orchestrator_missionitem"')]
    assert len(items) == 3  # 3 + 3 + 1
    # Their evidence goes with each batch (cascade), bounded by the same ids.
    assert all(" IN (" in sql for sql in deletes)
    assert len(deletes) <= 2 * len(items)


def test_settled_webhook_deliveries_and_their_attempts_go(db: None) -> None:
    endpoint = WebhookEndpoint.objects.create(
        name="x", url="http://127.0.0.1:9/h", secret="x" * 16, events=["*"]
    )
    for status in ("succeeded", "failed", "pending"):
        d = WebhookDelivery.objects.create(
            endpoint=endpoint,
            event="mission.queued",
            idempotency_key=status,
            status=status,
            created_at=days_ago(60),
        )
        WebhookAttempt.objects.create(delivery=d, number=1, started_at=days_ago(60))
    schedule = factories.RecurringMissionFactory()
    ScheduleRun.objects.create(
        schedule=schedule,
        due_at=days_ago(200),
        ran_at=days_ago(200),
        outcome="created",
        policy="queue",
    )

    totals = retention.prune(NOW)

    assert totals["webhook_deliveries"] == 2 and totals["schedule_runs"] == 1
    assert list(WebhookDelivery.objects.values_list("status", flat=True)) == ["pending"]
    assert WebhookAttempt.objects.count() == 1
    assert RecurringMission.objects.filter(pk=schedule.pk).exists()


def test_prune_command_prints_progress_and_supports_dry_run() -> None:
    old_finished_mission(n_items=3, age_days=(timezone.now() - NOW).days + 100)
    out = io.StringIO()

    call_command("prune", "--dry-run", stdout=out)
    assert "items: 3 would be deleted" in out.getvalue()
    assert MissionItem.objects.count() == 3

    out = io.StringIO()
    call_command("prune", "--batch-size", "2", "--only", "items", stdout=out)
    text = out.getvalue()
    assert "items: batch of 2 deleted (2 so far)" in text
    assert "items: batch of 1 deleted (3 so far)" in text
    assert "pruned: items 3" in text
    assert MissionItem.objects.count() == 0


def test_the_django_q_schedules_include_pruning_and_webhooks() -> None:
    call_command("setup_schedules", stdout=io.StringIO())
    prune = Schedule.objects.get(func="orchestrator.retention.prune_task")
    assert prune.minutes == 60
    assert Schedule.objects.filter(func="orchestrator.webhooks.deliver_due_task").exists()
    assert retention.prune_task() == dict.fromkeys(retention.TARGET_NAMES, 0)


def test_old_evidence_its_screenshots_and_uploaded_files_go(settings: Any, tmp_path: Path) -> None:
    """Evidence rows captured before `retention_items_days`, the screenshot files no row
    names any more, and the built-in uploader's old files (file and row) are pruned;
    recent ones stay."""
    from localnode.models import LocalUpload
    from mission_control import evidence_files

    png = b"\x89PNG\r\n\x1a\n" + b"0" * 32
    mission = factories.MissionFactory(status=MissionStatus.EXTRAINDO, n_items=3)
    old_item, new_item, replaced_item = MissionItem.objects.filter(mission=mission).order_by("id")
    old = ItemEvidence.objects.create(
        item=old_item,
        attempt=1,
        screenshot_file=evidence_files.save_png(mission.pk, old_item.pk, 1, png),
        captured_at=days_ago(40),
    )
    new = ItemEvidence.objects.create(
        item=new_item,
        attempt=1,
        screenshot_file=evidence_files.save_png(mission.pk, new_item.pk, 1, png + b"n"),
        captured_at=days_ago(1),
    )
    # A screenshot whose row was replaced by a later attempt: no row names it.
    stray = evidence_files.save_png(mission.pk, replaced_item.pk, 1, png + b"s")
    root = Path(settings.EVIDENCE_DIR)
    for rel in (old.screenshot_file, stray):
        os.utime(root / rel, (days_ago(2).timestamp(), days_ago(2).timestamp()))

    settings.LOCALNODE_UPLOADS_DIR = tmp_path
    uploads = []
    for key, age in (("old-export", 40), ("new-export", 1)):
        (tmp_path / key).write_bytes(b"{}")
        uploads.append(
            LocalUpload.objects.create(
                upload_key=key,
                filename=key,
                content_type="application/json",
                relpath=key,
                size=2,
                created_at=days_ago(age),
            )
        )

    totals = retention.prune(NOW)

    assert (totals["evidence"], totals["evidence_files"], totals["uploaded_files"]) == (1, 2, 1)
    assert list(ItemEvidence.objects.values_list("pk", flat=True)) == [new.pk]
    assert not (root / old.screenshot_file).exists() and not (root / stray).exists()
    assert evidence_files.read(new.screenshot_file) == png + b"n"
    assert list(LocalUpload.objects.values_list("upload_key", flat=True)) == ["new-export"]
    assert not (tmp_path / "old-export").exists() and (tmp_path / "new-export").exists()
    assert retention.prune(NOW) == dict.fromkeys(retention.TARGET_NAMES, 0)
