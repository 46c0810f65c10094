"""Capped counts on hot read paths: mission states (orchestrator.counting) and missions
ended today / in 24 h (dashboard.queries.ended_since)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from dashboard.queries import ended_since
from orchestrator.actions import mission_counts_by_status
from orchestrator.models import Mission, MissionEvent
from orchestrator.states import MissionStatus
from tests import factories

pytestmark = pytest.mark.django_db


def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("estimates come from PostgreSQL statistics; SQLite counts exactly")


def test_state_counts_are_exact_up_to_the_cap() -> None:
    factories.MissionFactory.create_batch(3, status=MissionStatus.QUEUED)
    factories.MissionFactory.create_batch(2, status=MissionStatus.ERRO)
    counts = mission_counts_by_status(cap=3)
    assert counts.counts == {s: 0 for s in MissionStatus.values} | {"QUEUED": 3, "ERRO": 2}
    assert counts.approximate == frozenset()


def test_state_counts_above_the_cap_are_estimates_marked_approximate() -> None:
    postgres_only()
    factories.MissionFactory.create_batch(40, status=MissionStatus.FINALIZADO)
    factories.MissionFactory.create_batch(2, status=MissionStatus.QUEUED)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Mission._meta.db_table}")
    counts = mission_counts_by_status(cap=10)
    assert counts.approximate == {"FINALIZADO"}
    assert counts.counts["FINALIZADO"] == 40  # the planner's figure, rounded
    assert counts.counts["QUEUED"] == 2


def test_an_unanalyzed_table_still_answers_more_than_the_cap() -> None:
    postgres_only()
    # reltuples is -1 until the first ANALYZE (PostgreSQL 14+): no estimate to give.
    factories.MissionFactory.create_batch(5, status=MissionStatus.ERRO)
    counts = mission_counts_by_status(cap=2)
    assert counts.approximate == {"ERRO"}
    assert counts.counts["ERRO"] >= 3


def test_state_counts_cost_one_query_whatever_the_rows(django_assert_num_queries: object) -> None:
    factories.MissionFactory.create_batch(5, status=MissionStatus.FINALIZADO)
    with django_assert_num_queries(1):  # type: ignore[operator]
        mission_counts_by_status(cap=10)


def _ended(mission: Mission, to: str, at: dt.datetime) -> None:
    MissionEvent.objects.create(mission=mission, kind="transition", to_status=to, created_at=at)


def test_ended_counts_are_exact_up_to_the_cap() -> None:
    now = timezone.now()
    mission = factories.MissionFactory()
    _ended(mission, "FINALIZADO", now - dt.timedelta(hours=1))
    _ended(mission, "ERRO", now - dt.timedelta(hours=2))
    _ended(mission, "FINALIZADO", now - dt.timedelta(hours=30))  # outside both windows
    _ended(mission, "CANCELADO", now)  # not an end that counts
    MissionEvent.objects.create(mission=mission, kind="item", created_at=now)
    ended = ended_since(now, now - dt.timedelta(minutes=90), cap=3)
    assert (ended.finished_today, ended.finished_24h, ended.errors_24h) == (1, 1, 1)
    assert ended.error_rate_24h == 50
    assert not ended.approximate_today and not ended.approximate_24h


def test_ended_counts_above_the_cap_are_scaled_from_the_newest_ends() -> None:
    now = timezone.now()
    mission = factories.MissionFactory()
    for hours, to in [(1, "FINALIZADO"), (2, "ERRO"), (3, "FINALIZADO"), (12, "FINALIZADO")]:
        _ended(mission, to, now - dt.timedelta(hours=hours))
    # The newest three cover 3 h: 2 finished and 1 error, times 24 h / 3 h.
    ended = ended_since(now, now - dt.timedelta(hours=2, minutes=30), cap=2)
    assert (ended.finished_24h, ended.errors_24h) == (16, 8)
    assert ended.approximate_24h
    # Since midnight (2.5 h ago here) lies inside those 3 h: exact.
    assert ended.finished_today == 1 and not ended.approximate_today
    assert ended.error_rate_24h == pytest.approx(100 / 3)


def test_ended_counts_cost_one_query(django_assert_num_queries: object) -> None:
    now = timezone.now()
    mission = factories.MissionFactory()
    for minutes in range(5):
        _ended(mission, "FINALIZADO", now - dt.timedelta(minutes=minutes))
    with django_assert_num_queries(1):  # type: ignore[operator]
        ended_since(now, now - dt.timedelta(hours=1), cap=2)
