"""Recurring missions: a template plus a cron expression, evaluated in its timezone.

A run never vanishes silently. Every due run writes a `ScheduleRun` saying what it did:

- no mission of the schedule is active: a mission is created;
- the previous one is still active (QUEUED or running), by `overlap_policy`:
  `skip` records the skipped run; `queue` holds the run (`queued_run_at`, several
  held runs coalesce into one) and creates its mission as soon as the previous one
  ends; `cancel_previous` cancels the active mission and creates the new one;
- runs missed while nothing was running (the orchestrator was down) are counted and
  run once on recovery (`missed` on the run).
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo

from croniter import croniter
from django.db import transaction

from orchestrator import actions, etl_outbox, states
from orchestrator.models import Mission, OverlapPolicy, RecurringMission, ScheduleRun

logger = logging.getLogger(__name__)

ACTIVE = frozenset({states.MissionStatus.QUEUED, *states.RUNNING})
# Missed occurrences counted at most (a schedule every minute down for a year...).
MAX_MISSED_COUNTED = 10_000


def next_run(cron: str, tz: str, after: dt.datetime) -> dt.datetime:
    zone = zoneinfo.ZoneInfo(tz)
    base = after.astimezone(zone)
    nxt = croniter(cron, base).get_next(dt.datetime)
    return nxt.astimezone(dt.UTC)


def missed_runs(cron: str, tz: str, due: dt.datetime, now: dt.datetime) -> int:
    """Occurrences after `due` that were also due by `now` (they run as one)."""
    missed = 0
    at = due
    while missed < MAX_MISSED_COUNTED:
        at = next_run(cron, tz, at)
        if at > now:
            break
        missed += 1
    return missed


def active_mission(schedule: RecurringMission) -> Mission | None:
    return Mission.objects.filter(schedule=schedule, status__in=ACTIVE).order_by("-id").first()


class Fetched:
    """The ETL run a schedule without URLs resumes, looked up before its row is locked
    (no database lock is held across an HTTP call); whether a live mission owns it is
    decided under the lock (`cancel_previous` frees the previous mission's run first)."""

    def __init__(self, schedule_id: int) -> None:
        self.outcome: object = None
        row = (
            RecurringMission.objects.filter(pk=schedule_id)
            .values_list("urls", "domain", "etl_run")
            .first()
        )
        self.wanted = row is not None and etl_outbox.wants_resume(row[0], row[2] or None)
        if self.wanted and row is not None:
            try:
                self.outcome = etl_outbox.fetch_run(row[1], row[2] or None)
            except etl_outbox.EtlRefused as exc:
                self.outcome = exc

    def __call__(self, domain: str, etl_run: str | None) -> object:
        if isinstance(self.outcome, etl_outbox.EtlRefused):
            raise self.outcome
        return self.outcome


def _create(schedule: RecurringMission, now: dt.datetime, fetched: Fetched | None) -> Mission:
    return actions.create_mission(
        name=f"{schedule.name} · {now:%d/%m %H:%M}",
        urls=schedule.urls,
        domain=schedule.domain,
        etl_run=schedule.etl_run or None,
        priority=schedule.priority,
        writer=schedule.writer,
        schedule=schedule,
        now=now,
        fetch_etl_run=fetched if fetched is not None and fetched.wanted else None,
    )


def _failure(exc: Exception) -> str:
    if isinstance(exc, etl_outbox.EtlRefused):
        return f"ETL: {exc.message} ({exc.code})"[:1000]
    return f"{type(exc).__name__}: {exc}"[:1000]


def _record(
    schedule: RecurringMission,
    *,
    due: dt.datetime,
    now: dt.datetime,
    outcome: str,
    message: str,
    missed: int = 0,
    mission: Mission | None = None,
    previous: Mission | None = None,
) -> ScheduleRun:
    run = ScheduleRun.objects.create(
        schedule=schedule,
        due_at=due,
        ran_at=now,
        outcome=outcome,
        policy=schedule.overlap_policy,
        missed=missed,
        mission=mission,
        previous_mission=previous,
        message=message,
    )
    log = logger.warning if outcome in (ScheduleRun.Outcome.SKIPPED, "failed") else logger.info
    log(
        "schedule %s run due %s: %s (%s)",
        schedule.pk,
        due,
        outcome,
        message,
        extra={"schedule_id": schedule.pk, "mission_id": getattr(mission, "pk", None)},
    )
    return run


def _run_one(schedule: RecurringMission, now: dt.datetime, fetched: Fetched | None = None) -> bool:
    """Apply one due run of a locked schedule; returns whether a mission was created."""
    due = schedule.next_run_at or now
    missed = missed_runs(schedule.cron, schedule.timezone, due, now)
    note = (
        f"{missed} execução(ões) perdida(s) enquanto o orquestrador estava parado; "
        "executada uma vez na recuperação. "
        if missed
        else ""
    )
    previous = active_mission(schedule)
    policy = schedule.overlap_policy
    created: Mission | None = None
    try:
        if previous is None:
            created = _create(schedule, now, fetched)
            _record(
                schedule,
                due=due,
                now=now,
                outcome=ScheduleRun.Outcome.CREATED,
                message=note + f"missão #{created.pk} criada",
                missed=missed,
                mission=created,
            )
        elif policy == OverlapPolicy.SKIP:
            _record(
                schedule,
                due=due,
                now=now,
                outcome=ScheduleRun.Outcome.SKIPPED,
                message=note
                + f"pulada: a missão #{previous.pk} ainda está {previous.get_status_display()}",
                missed=missed,
                previous=previous,
            )
        elif policy == OverlapPolicy.QUEUE:
            coalesced = schedule.queued_run_at is not None
            if not coalesced:
                schedule.queued_run_at = due
            _record(
                schedule,
                due=due,
                now=now,
                outcome=ScheduleRun.Outcome.QUEUED,
                message=note
                + f"enfileirada até a missão #{previous.pk} terminar"
                + (" (agrupada com a execução já enfileirada)" if coalesced else ""),
                missed=missed,
                previous=previous,
            )
        else:
            actions.cancel_mission(previous, actor=f"agendamento {schedule.pk}", now=now)
            created = _create(schedule, now, fetched)
            _record(
                schedule,
                due=due,
                now=now,
                outcome=ScheduleRun.Outcome.CANCELLED_PREVIOUS,
                message=note + f"missão #{previous.pk} cancelada; missão #{created.pk} criada",
                missed=missed,
                mission=created,
                previous=previous,
            )
    except Exception as exc:
        if not isinstance(exc, etl_outbox.EtlRefused):  # a refusal is recorded, not a bug
            logger.exception("schedule %s could not create its mission", schedule.pk)
        _record(
            schedule,
            due=due,
            now=now,
            outcome=ScheduleRun.Outcome.FAILED,
            message=(note + _failure(exc))[:1000],
            missed=missed,
            previous=previous,
        )
    schedule.last_run_at = now
    schedule.next_run_at = next_run(schedule.cron, schedule.timezone, now)
    schedule.save(update_fields=["last_run_at", "next_run_at", "queued_run_at", "updated_at"])
    return created is not None


def _run_queued(
    schedule: RecurringMission, now: dt.datetime, fetched: Fetched | None = None
) -> bool:
    """A run held by the `queue` policy: create it once the previous mission ended."""
    if active_mission(schedule) is not None:
        return False
    due = schedule.queued_run_at or now
    created: Mission | None = None
    try:
        created = _create(schedule, now, fetched)
        _record(
            schedule,
            due=due,
            now=now,
            outcome=ScheduleRun.Outcome.CREATED,
            message=f"execução enfileirada de {due:%d/%m %H:%M} UTC iniciada após a anterior "
            f"terminar: missão #{created.pk}",
            mission=created,
        )
    except Exception as exc:
        if not isinstance(exc, etl_outbox.EtlRefused):  # a refusal is recorded, not a bug
            logger.exception("schedule %s could not create its queued mission", schedule.pk)
        _record(
            schedule,
            due=due,
            now=now,
            outcome=ScheduleRun.Outcome.FAILED,
            message=_failure(exc),
        )
    schedule.queued_run_at = None
    schedule.save(update_fields=["queued_run_at", "updated_at"])
    return created is not None


def run_due(now: dt.datetime) -> int:
    """Apply every due run and every held run whose turn came. Returns missions created."""
    created = 0
    held = RecurringMission.objects.filter(queued_run_at__isnull=False).values_list("id", flat=True)
    for schedule_id in list(held):
        waiting = Mission.objects.filter(schedule_id=schedule_id, status__in=ACTIVE).exists()
        fetched = None if waiting else Fetched(schedule_id)
        with transaction.atomic():
            schedule = (
                RecurringMission.objects.select_for_update(skip_locked=True)
                .filter(pk=schedule_id, queued_run_at__isnull=False)
                .first()
            )
            if schedule is not None:
                created += _run_queued(schedule, now, fetched)
    due = RecurringMission.objects.filter(enabled=True, next_run_at__lte=now).values_list(
        "id", flat=True
    )
    for schedule_id in list(due):
        fetched = Fetched(schedule_id)
        with transaction.atomic():
            schedule = (
                RecurringMission.objects.select_for_update(skip_locked=True)
                .filter(pk=schedule_id, enabled=True, next_run_at__lte=now)
                .first()
            )
            if schedule is not None:
                created += _run_one(schedule, now, fetched)
    return created
