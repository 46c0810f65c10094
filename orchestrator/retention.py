"""Retention: rows nobody needs any more are deleted in small batches.

What goes, once older than its config key (days):

- `retention_events_days` (90): events of finished missions, and schedule runs;
- `retention_items_days` (30): items of missions that ended (FINALIZADO, ERRO,
  CANCELADO) that long ago — the mission row keeps its counters; retrying such an
  ERRO/CANCELADO mission afterwards has nothing left to resume;
- `retention_sessions_days` (30): sessions that ended and hold no slot;
- `retention_webhooks_days` (30): webhook deliveries that succeeded or gave up, with
  their attempts;
- `retention_items_days` also bounds failure evidence (`evidence`: rows captured that
  long ago, besides those going with their items), the screenshot files no evidence row
  names any more (`evidence_files`, under EVIDENCE_DIR) and the built-in uploader's files
  (`uploaded_files`, through the ``prune_uploads`` hook).

Each batch (`retention_batch_size` ids, oldest first) is its own short transaction, so
pruning never holds long locks and may stop and resume at any point. Run it with
`manage.py prune` or the django-q2 schedule `orchestrator.retention.prune_task`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from mission_control import evidence_files, extensions
from orchestrator import states
from orchestrator.models import (
    BrowserSession,
    ItemEvidence,
    ItemThroughput,
    Mission,
    MissionEvent,
    MissionItem,
    ScheduleRun,
    WebhookDelivery,
)
from registry import config
from registry.config import Config

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (target, deleted in this batch, total so far)


@dataclass(frozen=True)
class Target:
    name: str
    model: type[models.Model]
    days_key: str
    # Rows older than the cutoff that may go.
    condition: Callable[[dt.datetime], Q]


def _ended_missions(cutoff: dt.datetime) -> Q:
    return Q(status__in=states.TERMINAL, updated_at__lt=cutoff)


TARGETS: tuple[Target, ...] = (
    Target(
        "events",
        MissionEvent,
        "retention_events_days",
        lambda cutoff: Q(
            created_at__lt=cutoff,
            mission__in=Mission.objects.filter(_ended_missions(cutoff)).values("id"),
        ),
    ),
    Target(
        "schedule_runs",
        ScheduleRun,
        "retention_events_days",
        lambda cutoff: Q(ran_at__lt=cutoff),
    ),
    Target(
        "items",
        MissionItem,
        "retention_items_days",
        lambda cutoff: Q(mission__in=Mission.objects.filter(_ended_missions(cutoff)).values("id")),
    ),
    Target(
        "sessions",
        BrowserSession,
        "retention_sessions_days",
        lambda cutoff: Q(status__in=states.SESSION_ENDED, holds_slot=False, updated_at__lt=cutoff),
    ),
    Target(
        "webhook_deliveries",
        WebhookDelivery,
        "retention_webhooks_days",
        lambda cutoff: Q(
            status__in=[WebhookDelivery.Status.SUCCEEDED, WebhookDelivery.Status.FAILED],
            created_at__lt=cutoff,
        ),
    ),
    Target(
        "evidence",
        ItemEvidence,
        "retention_items_days",
        lambda cutoff: Q(captured_at__lt=cutoff),
    ),
    # The per-minute item counters of the overview (kept as long as events).
    Target(
        "throughput",
        ItemThroughput,
        "retention_events_days",
        lambda cutoff: Q(minute__lt=cutoff),
    ),
)
# Files, pruned after the rows that name them.
FILE_TARGETS = ("evidence_files", "uploaded_files")
TARGET_NAMES = tuple(t.name for t in TARGETS) + FILE_TARGETS


def cutoff_for(target: Target, now: dt.datetime, cfg: Config) -> dt.datetime:
    return now - dt.timedelta(days=int(cfg[target.days_key]))


def count_due(now: dt.datetime, cfg: Config | None = None) -> dict[str, int]:
    """How many rows each target would delete now (for `prune --dry-run`)."""
    cfg = cfg or config.load()
    return {
        t.name: t.model._default_manager.filter(t.condition(cutoff_for(t, now, cfg))).count()
        for t in TARGETS
    }


def prune(
    now: dt.datetime | None = None,
    *,
    cfg: Config | None = None,
    batch_size: int | None = None,
    only: tuple[str, ...] | None = None,
    max_batches: int | None = None,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Delete what is past retention, batch by batch. Returns rows deleted per target
    (related rows deleted by cascade are not counted)."""
    now = now or timezone.now()
    cfg = cfg or config.load()
    size = batch_size or cfg.retention_batch_size
    totals: dict[str, int] = {}
    for target in TARGETS:
        if only and target.name not in only:
            continue
        condition = target.condition(cutoff_for(target, now, cfg))
        manager = target.model._default_manager
        total = batches = 0
        while max_batches is None or batches < max_batches:
            with transaction.atomic():
                ids = list(
                    manager.filter(condition).order_by("id").values_list("id", flat=True)[:size]
                )
                if not ids:
                    break
                manager.filter(id__in=ids).delete()
            batches += 1
            total += len(ids)
            if progress:
                progress(target.name, len(ids), total)
            if len(ids) < size:
                break
        totals[target.name] = total
        if total:
            logger.info("pruned %s %s rows", total, target.name, extra={"target": target.name})
    totals.update(prune_files(now, cfg, only))
    return totals


def prune_files(now: dt.datetime, cfg: Config, only: tuple[str, ...] | None) -> dict[str, int]:
    """Screenshots no evidence row names (pruned or replaced) and the built-in
    uploader's files older than `retention_items_days`."""
    totals: dict[str, int] = {}
    if not only or "evidence_files" in only:
        referenced = set(
            ItemEvidence.objects.exclude(screenshot_file="").values_list(
                "screenshot_file", flat=True
            )
        )
        totals["evidence_files"] = evidence_files.sweep(referenced, now)
    if not only or "uploaded_files" in only:
        cutoff = now - dt.timedelta(days=int(cfg["retention_items_days"]))
        totals["uploaded_files"] = sum(
            prune(cutoff) for prune in extensions.providers("prune_uploads")
        )
    for name, n in totals.items():
        if n:
            logger.info("pruned %s %s", n, name, extra={"target": name})
    return totals


def prune_task() -> dict[str, Any]:
    """django-q2 entry point (`orchestrator.retention.prune_task`); bounded per run so
    a huge backlog is worked off over several runs instead of one long task."""
    return prune(max_batches=200)
