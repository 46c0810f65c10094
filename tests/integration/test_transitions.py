"""`orchestrator.transitions`: operator cancels go through the engine's own session
closing (sessions locked before missions; lease tokens bumped so a manager still holding
a session's lease is fenced out), one call at a time."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrator import actions, transitions
from orchestrator.models import BrowserSession
from orchestrator.states import MissionStatus, SessionStatus
from tests import factories

pytestmark = pytest.mark.django_db


def test_cancel_marks_live_sessions_closing_and_fences_their_leases() -> None:
    mission = factories.MissionFactory(status=MissionStatus.EXTRAINDO, n_items=2)
    live = factories.BrowserSessionFactory(mission=mission, status=SessionStatus.BUSY)
    ended = factories.BrowserSessionFactory(mission=mission, status=SessionStatus.CLOSED)
    before = live.lease_token

    actions.cancel_mission(mission, actor="op")

    live.refresh_from_db()
    ended.refresh_from_db()
    assert mission.status == MissionStatus.CANCELADO
    assert live.status == SessionStatus.CLOSING and live.lease_token == before + 1
    assert ended.status == SessionStatus.CLOSED


@pytest.mark.postgres
def test_cancel_locks_the_sessions_before_the_mission() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's")
    mission = factories.MissionFactory(status=MissionStatus.EXTRAINDO)
    factories.BrowserSessionFactory(mission=mission, status=SessionStatus.READY)
    with CaptureQueriesContext(connection) as queries:
        actions.cancel_mission(mission)
    writes = [
        q["sql"]
        for q in queries.captured_queries
        if "FOR UPDATE" in q["sql"] or q["sql"].startswith("UPDATE")
    ]
    first_session = next(i for i, sql in enumerate(writes) if "browsersession" in sql)
    first_mission = next(i for i, sql in enumerate(writes) if '"orchestrator_mission"' in sql)
    assert first_session < first_mission


def test_close_mission_sessions_counts_only_live_ones() -> None:
    mission = factories.MissionFactory(status=MissionStatus.EXTRAINDO)
    factories.BrowserSessionFactory(mission=mission, status=SessionStatus.READY)
    factories.BrowserSessionFactory(mission=mission, status=SessionStatus.CLOSING)
    factories.BrowserSessionFactory(mission=mission, status=SessionStatus.FAILED)
    assert transitions.close_mission_sessions(mission.pk, timezone.now()) == 1
    assert BrowserSession.objects.filter(status=SessionStatus.CLOSING).count() == 2
