"""Recurring missions never skip silently: overlap policy applied and recorded, runs
missed while down run once on recovery and recorded."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from django.test import Client
from rest_framework.test import APIClient

from orchestrator import events, schedules
from orchestrator.models import Mission, OverlapPolicy, RecurringMission, ScheduleRun
from orchestrator.states import MissionStatus
from tests import factories
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.integration.engine_helpers import build_fleet

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_leftover_wakeups() -> Iterator[None]:
    # Events published inside a test's rolled-back transaction leave NOTIFY wake-ups
    # queued on the thread; drop them so later transactional tests see only their own.
    yield
    events._pending.wake.clear()


NOON = dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.UTC)


def hourly(policy: str, **kw: object) -> RecurringMission:
    return factories.RecurringMissionFactory(
        cron="0 * * * *", overlap_policy=policy, next_run_at=NOON, **kw
    )


def hours(n: float) -> dt.datetime:
    return NOON + dt.timedelta(hours=n)


def test_skip_records_the_skipped_run_with_the_mission_still_active() -> None:
    schedule = hourly(OverlapPolicy.SKIP)

    assert schedules.run_due(NOON) == 1
    first = Mission.objects.get(schedule=schedule)
    assert schedules.run_due(hours(1)) == 0

    runs = list(ScheduleRun.objects.filter(schedule=schedule).order_by("id"))
    assert [r.outcome for r in runs] == ["created", "skipped"]
    assert runs[1].previous_mission == first
    assert runs[1].message == f"pulada: a missão #{first.pk} ainda está Na fila"
    assert Mission.objects.filter(schedule=schedule).count() == 1


def test_queue_holds_the_run_and_starts_it_when_the_previous_ends() -> None:
    schedule = hourly(OverlapPolicy.QUEUE)
    schedules.run_due(NOON)
    first = Mission.objects.get(schedule=schedule)

    assert schedules.run_due(hours(1)) == 0
    assert schedules.run_due(hours(2)) == 0  # coalesced with the held run
    schedule.refresh_from_db()
    assert schedule.queued_run_at == hours(1)

    Mission.objects.filter(pk=first.pk).update(status=MissionStatus.FINALIZADO)
    assert schedules.run_due(hours(2) + dt.timedelta(minutes=5)) == 1

    schedule.refresh_from_db()
    assert schedule.queued_run_at is None
    outcomes = list(
        ScheduleRun.objects.filter(schedule=schedule)
        .order_by("id")
        .values_list("outcome", "message")
    )
    assert [o for o, _ in outcomes] == ["created", "queued", "queued", "created"]
    assert "agrupada" in outcomes[2][1]
    assert "iniciada após a anterior terminar" in outcomes[3][1]
    assert Mission.objects.filter(schedule=schedule).count() == 2


def test_cancel_previous_cancels_the_active_mission_and_starts_a_new_one() -> None:
    schedule = hourly(OverlapPolicy.CANCEL_PREVIOUS)
    schedules.run_due(NOON)
    first = Mission.objects.get(schedule=schedule)

    assert schedules.run_due(hours(1)) == 1

    first.refresh_from_db()
    assert first.status == MissionStatus.CANCELADO
    run = ScheduleRun.objects.filter(schedule=schedule).latest("id")
    assert run.outcome == ScheduleRun.Outcome.CANCELLED_PREVIOUS
    assert run.previous_mission == first and run.mission is not None
    assert run.mission.status == MissionStatus.QUEUED
    assert first.events.filter(to_status="CANCELADO", actor=f"agendamento {schedule.pk}").exists()


def test_runs_missed_while_down_run_once_and_are_recorded() -> None:
    schedule = factories.RecurringMissionFactory(cron="*/5 * * * *", next_run_at=hours(-3))

    assert schedules.run_due(NOON) == 1

    (run,) = ScheduleRun.objects.filter(schedule=schedule)
    assert run.missed == 36  # 12:05 .. 15:00 after the 12:00 run that was due
    assert run.due_at == hours(-3)
    assert run.message.startswith("36 execução(ões) perdida(s)")
    assert Mission.objects.count() == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at == NOON + dt.timedelta(minutes=5)


def test_a_mission_that_cannot_be_created_is_a_failed_run_not_silence() -> None:
    schedule = hourly(OverlapPolicy.QUEUE, urls=["not a url"])

    assert schedules.run_due(NOON) == 0

    (run,) = ScheduleRun.objects.filter(schedule=schedule)
    assert run.outcome == ScheduleRun.Outcome.FAILED
    assert "ValidationError" in run.message
    schedule.refresh_from_db()
    assert schedule.next_run_at == hours(1)


def test_queued_run_follows_a_mission_the_engine_finishes(
    fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    fleet = build_fleet(fake_worker, fake_writer)
    schedule = factories.RecurringMissionFactory(
        cron="* * * * *", overlap_policy=OverlapPolicy.QUEUE, next_run_at=NOON
    )
    schedules.run_due(NOON)
    first = Mission.objects.get(schedule=schedule)
    schedules.run_due(NOON + dt.timedelta(minutes=1))
    assert Mission.objects.filter(schedule=schedule).count() == 1

    fleet.drive_to(first, MissionStatus.FINALIZADO)
    assert schedules.run_due(NOON + dt.timedelta(minutes=1, seconds=30)) == 1
    assert Mission.objects.filter(schedule=schedule).count() == 2


def test_api_sets_the_policy_and_lists_runs(operator_api: APIClient, viewer_api: APIClient) -> None:
    created = operator_api.post(
        "/api/recurring-missions/",
        {
            "name": "Diária",
            "cron": "0 6 * * *",
            "urls": ["https://example.com/a"],
            "overlap_policy": "skip",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["overlap_policy"] == "skip"
    pk = created.json()["id"]
    RecurringMission.objects.filter(pk=pk).update(next_run_at=NOON)
    schedules.run_due(NOON)
    schedules.run_due(NOON + dt.timedelta(days=1))

    runs = viewer_api.get(f"/api/recurring-missions/{pk}/runs/").json()["results"]
    assert [r["outcome"] for r in runs] == ["skipped", "created"]
    assert [r["outcome_display"] for r in runs] == ["Pulada (anterior ativa)", "Missão criada"]
    skipped = viewer_api.get(f"/api/recurring-missions/{pk}/runs/?outcome=skipped").json()
    assert len(skipped["results"]) == 1
    bad = operator_api.patch(
        f"/api/recurring-missions/{pk}/", {"overlap_policy": "sometimes"}, format="json"
    )
    assert bad.status_code == 400


def test_admin_shows_policy_and_runs(client: Client) -> None:
    user = factories.UserFactory(role="admin")
    user.is_staff = user.is_superuser = True
    user.save()
    client.force_login(user)
    schedule = hourly(OverlapPolicy.SKIP)
    schedules.run_due(NOON)

    assert (
        "overlap_policy"
        in client.get(
            f"/admin/orchestrator/recurringmission/{schedule.pk}/change/"
        ).content.decode()
    )
    page = client.get("/admin/orchestrator/schedulerun/").content.decode()
    assert "Missão criada" in page
