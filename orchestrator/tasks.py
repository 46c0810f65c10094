"""django-q2 tasks: thin triggers that call manager functions. State lives in our rows,
so a lost or duplicated task never loses or duplicates work."""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone

from orchestrator.managers.missions import MissionManager
from orchestrator.managers.sessions import SessionManager
from orchestrator.managers.workers import WorkerManager
from orchestrator.runner import instance_name

logger = logging.getLogger(__name__)


def tick_sessions() -> dict[str, int]:
    return SessionManager(f"q:{instance_name()}").tick().counts


def tick_workers() -> dict[str, int]:
    return WorkerManager(f"q:{instance_name()}").tick().counts


def tick_missions() -> dict[str, int]:
    return MissionManager(f"q:{instance_name()}").tick().counts


def run_due_schedules() -> int:
    from orchestrator.schedules import run_due

    return run_due(timezone.now())


def recompute_counters() -> dict[str, Any]:
    from orchestrator.slots import recompute_counters as recompute

    return recompute()


def etl_sync() -> dict[str, int]:
    """Send the ETL outbox (also sent by the EtlManager of run_orchestrator)."""
    from orchestrator.etl_outbox import sync

    return sync(owner=f"q:{instance_name()}")
