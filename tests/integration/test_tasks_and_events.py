"""django-q2 triggers, recurring missions and the event bus."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import transaction
from django_q.models import Schedule
from django_q.tasks import async_task, result

from orchestrator import events, schedules
from orchestrator.models import Mission, OrchestratorInstance
from orchestrator.runner import Orchestrator
from orchestrator.states import MissionStatus
from tests import factories

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.UTC)  # 12:00 in São Paulo


def test_next_run_follows_the_schedule_timezone() -> None:
    nxt = schedules.next_run("0 6 * * *", "America/Sao_Paulo", NOON)
    assert nxt == dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)


def test_a_due_schedule_creates_one_mission_and_moves_on() -> None:
    schedule = factories.RecurringMissionFactory(next_run_at=NOON - dt.timedelta(minutes=1))

    assert schedules.run_due(NOON) == 1
    assert schedules.run_due(NOON) == 0

    mission = Mission.objects.get(schedule=schedule)
    assert mission.total_items == 2
    schedule.refresh_from_db()
    assert schedule.last_run_at == NOON
    assert schedule.next_run_at is not None and schedule.next_run_at > NOON


def test_a_run_missed_while_down_runs_once_on_recovery() -> None:
    factories.RecurringMissionFactory(cron="*/5 * * * *", next_run_at=NOON - dt.timedelta(hours=3))

    assert schedules.run_due(NOON) == 1
    assert Mission.objects.count() == 1


def test_disabled_schedules_never_run() -> None:
    factories.RecurringMissionFactory(enabled=False, next_run_at=NOON - dt.timedelta(days=1))
    assert schedules.run_due(NOON) == 0


def test_manager_ticks_run_as_django_q2_tasks() -> None:
    mission = factories.MissionFactory(n_items=2)
    factories.SiteConfigFactory(domain="*", proxy_types=[])
    factories.WriterFactory(is_default=True)
    factories.WorkerFactory()

    task_id = async_task("orchestrator.tasks.tick_missions")

    counts = result(task_id)
    assert counts == {"allocated": 1}
    mission.refresh_from_db()
    assert mission.status == MissionStatus.ATRIBUIDO


def test_setup_schedules_is_idempotent() -> None:
    call_command("setup_schedules")
    call_command("setup_schedules")
    names = list(Schedule.objects.values_list("name", flat=True))
    assert len(names) == len(set(names))
    from django.conf import settings

    localnode = {"localnode.tasks.run_pending_jobs"} if settings.LOCALNODE_ENABLED else set()
    assert set(Schedule.objects.values_list("func", flat=True)) == PERIODIC_TASKS | localnode


# Every periodic task the code and docs rely on (docs/deploy.md lists them): an
# unscheduled one (orchestrator.tasks.etl_sync was, issue #16) fails this test.
PERIODIC_TASKS = {
    "orchestrator.tasks.tick_sessions",
    "orchestrator.tasks.tick_workers",
    "orchestrator.tasks.tick_missions",
    "orchestrator.tasks.run_due_schedules",
    "orchestrator.tasks.recompute_counters",
    "orchestrator.tasks.etl_sync",
    "orchestrator.webhooks.deliver_due_task",
    "orchestrator.retention.prune_task",
}


def test_every_task_of_orchestrator_tasks_is_scheduled_and_importable() -> None:
    """The exact set: each public function of orchestrator.tasks is scheduled (none
    left out), and each scheduled path imports to a callable."""
    import importlib
    import inspect

    from orchestrator import tasks

    defined = {
        f"orchestrator.tasks.{name}"
        for name, fn in inspect.getmembers(tasks, inspect.isfunction)
        if fn.__module__ == tasks.__name__ and not name.startswith("_")
    }
    assert defined <= PERIODIC_TASKS
    call_command("setup_schedules")
    for path in Schedule.objects.values_list("func", flat=True):
        module, _, name = path.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name))


def test_events_wake_the_managers_they_concern_in_process() -> None:
    orchestrator = Orchestrator(name="wake-test", use_notify=False)
    events.event_published.connect(orchestrator._on_event, dispatch_uid="wake-test")
    try:
        events.publish("session.failed", mission_id=1)
    finally:
        events.event_published.disconnect(dispatch_uid="wake-test")
    assert orchestrator._wake == {"sessions", "missions"}


def test_run_once_records_each_manager_tick_on_the_instance() -> None:
    orchestrator = Orchestrator(name="once-test", use_notify=False)
    orchestrator.run(once=True)

    instance = OrchestratorInstance.objects.get(name="once-test")
    assert instance.stopped_at is not None
    managers = {"sessions", "workers", "missions", "etl"}
    # The workers manager's second lane (result delivery) has its own stats entry; a
    # single pass runs the manager's whole tick, so that lane is counted under "workers".
    assert set(instance.stats) == managers | {"workers:results"}
    assert all(
        instance.stats[k]["ticks"] == 1 and "duration_ms" in instance.stats[k] for k in managers
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_notify_is_sent_once_per_transaction_after_commit() -> None:
    listener = events.Listener()
    assert listener.connect()
    try:
        with transaction.atomic():
            events.publish("mission.queued", mission_id=1)
            events.publish("session.requested", mission_id=1)
            assert listener.wait(timeout=0.2) == set()  # nothing before commit
        assert listener.wait(timeout=5) == {"missions", "sessions"}
        assert listener.wait(timeout=0.2) == set()  # and only once
    finally:
        listener.close()
