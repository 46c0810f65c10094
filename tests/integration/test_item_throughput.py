"""The per-minute item counters PostgreSQL keeps with a trigger (migration 0006), and
the overview reading them instead of counting items."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard import queries
from orchestrator import retention
from orchestrator.models import ItemThroughput, MissionItem
from tests import factories

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def counted(since: dt.datetime | None = None) -> int:
    rows = ItemThroughput.objects.all()
    if since is not None:
        rows = rows.filter(minute__gte=since)
    return int(rows.aggregate(n=Sum("n"))["n"] or 0)


def test_items_finished_by_an_update_are_counted_once_per_minute() -> None:
    mission = factories.MissionFactory(n_items=30)
    at = timezone.now().replace(second=30, microsecond=0)
    MissionItem.objects.filter(mission=mission, id__in=mission.items.values("id")[:20]).update(
        status="done", finished_at=at
    )
    assert counted() == 20
    assert set(ItemThroughput.objects.values_list("minute", flat=True)) == {at.replace(second=0)}
    # Touching finished items without changing finished_at adds nothing.
    MissionItem.objects.filter(mission=mission).update(attempts=2)
    assert counted() == 20
    # Finishing the rest a minute later lands in that minute.
    MissionItem.objects.filter(mission=mission, finished_at__isnull=True).update(
        status="done", finished_at=at + dt.timedelta(minutes=1)
    )
    assert counted() == 30
    assert counted(since=at + dt.timedelta(seconds=30)) == 10


def test_items_inserted_finished_are_counted() -> None:
    mission = factories.MissionFactory(n_items=0)
    now = timezone.now()
    MissionItem.objects.bulk_create(
        [MissionItem(mission=mission, url=f"https://e.x/{i}", finished_at=now) for i in range(3)]
        + [MissionItem(mission=mission, url="https://e.x/pending")]
    )
    assert counted() == 3


def test_overview_reads_the_counters_not_the_items() -> None:
    mission = factories.MissionFactory(n_items=50)
    now = timezone.now()
    MissionItem.objects.filter(mission=mission).update(
        status="done", finished_at=now - dt.timedelta(minutes=2)
    )
    with CaptureQueriesContext(connection) as ctx:
        overview = queries.overview(now)
    assert overview.items_per_min == 5.0  # 50 in the last 10 minutes
    assert overview.throughput_total == 50
    # Throughput comes from the counters. The one items query left is the "failed in the
    # last 24 h" card: a range on the finished_at index, bounded by a day's failures.
    item_reads = [q["sql"] for q in ctx.captured_queries if "orchestrator_missionitem" in q["sql"]]
    assert all('"finished_at" >=' in sql and "LIMIT" in sql for sql in item_reads), item_reads
    assert len(item_reads) <= 1


def test_retention_prunes_old_counters() -> None:
    now = timezone.now()
    ItemThroughput.objects.create(minute=now - dt.timedelta(days=400), n=7)
    ItemThroughput.objects.create(minute=now.replace(second=0, microsecond=0), shard=1, n=3)
    totals = retention.prune(now=now)
    assert totals["throughput"] == 1
    assert list(ItemThroughput.objects.values_list("n", flat=True)) == [3]
