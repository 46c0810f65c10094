"""Register the manager ticks and periodic jobs as django-q2 schedules (idempotent)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django_q.models import Schedule

SCHEDULES = [
    ("mc: tick sessions", "orchestrator.tasks.tick_sessions"),
    ("mc: tick workers", "orchestrator.tasks.tick_workers"),
    ("mc: tick missions", "orchestrator.tasks.tick_missions"),
    ("mc: recurring missions", "orchestrator.tasks.run_due_schedules"),
    ("mc: recompute counters", "orchestrator.tasks.recompute_counters"),
    ("mc: webhook deliveries", "orchestrator.webhooks.deliver_due_task"),
    ("mc: prune old rows", "orchestrator.retention.prune_task"),
    ("mc: ETL outbox", "orchestrator.tasks.etl_sync"),
]
# Every minute unless listed here.
MINUTES = {"mc: recompute counters": 10, "mc: prune old rows": 60}
# With the built-in node on, qcluster alone also runs its jobs.
LOCALNODE_SCHEDULE = ("mc: localnode jobs", "localnode.tasks.run_pending_jobs")


class Command(BaseCommand):
    help = "Register the orchestrator's django-q2 schedules (safe to run repeatedly)."

    def handle(self, *args: Any, **options: Any) -> None:
        from django.conf import settings

        schedules = [*SCHEDULES, *([LOCALNODE_SCHEDULE] if settings.LOCALNODE_ENABLED else [])]
        for name, func in schedules:
            minutes = MINUTES.get(name, 1)
            _, created = Schedule.objects.update_or_create(
                name=name,
                defaults={
                    "func": func,
                    "schedule_type": Schedule.MINUTES,
                    "minutes": minutes,
                    "repeats": -1,
                },
            )
            self.stdout.write(f"{'created' if created else 'kept'} {name}")
