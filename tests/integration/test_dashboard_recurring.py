"""Dashboard: the read-only recurring missions page with recent schedule runs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from django.utils import timezone

from orchestrator.models import OverlapPolicy, RecurringMission, ScheduleRun
from tests import factories

pytestmark = pytest.mark.django_db


def test_viewer_sees_schedules_and_recent_runs(login: Callable[..., Client]) -> None:
    now = timezone.now()
    schedule = factories.RecurringMissionFactory(
        name="Preços diários",
        cron="15 6 * * 1-5",
        overlap_policy=OverlapPolicy.SKIP,
        next_run_at=now,
        last_run_at=now,
    )
    factories.RecurringMissionFactory(name="Parado", enabled=False)
    mission = factories.MissionFactory()
    ScheduleRun.objects.create(
        schedule=schedule,
        due_at=now,
        ran_at=now,
        outcome=ScheduleRun.Outcome.CREATED,
        policy=OverlapPolicy.SKIP,
        mission=mission,
    )
    ScheduleRun.objects.create(
        schedule=schedule,
        due_at=now,
        ran_at=now,
        outcome=ScheduleRun.Outcome.SKIPPED,
        policy=OverlapPolicy.SKIP,
        missed=2,
        message="anterior ainda ativa",
    )
    response = login("viewer").get("/recorrentes/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Preços diários" in body and "15 6 * * 1-5" in body and "America/Sao_Paulo" in body
    assert "Pular (e registrar)" in body and "Parado" in body
    assert "Missão criada" in body and "Pulada (anterior ativa)" in body
    assert f'href="/missoes/{mission.pk}/"' in body and "anterior ainda ativa" in body
    assert 'href="/recorrentes/"' in body  # sidebar entry
    assert RecurringMission.objects.count() == 2


def test_empty_page_anonymous_redirect_and_no_role(
    client: Client, login: Callable[..., Client]
) -> None:
    anonymous = client.get("/recorrentes/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")
    assert login(None).get("/recorrentes/").status_code == 403
    body = login("viewer").get("/recorrentes/").content.decode()
    assert "Nenhuma missão recorrente" in body and "Nenhuma execução ainda" in body


def test_recurring_page_is_read_only(login: Callable[..., Client]) -> None:
    assert login("admin").post("/recorrentes/").status_code == 405
