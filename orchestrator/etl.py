"""Optional ETL system of record for scrape runs (contracts/etl-api.md).

When ETL_API_ENDPOINT is unset every step here is a no-op. Transient ETL failures are
logged and retried on a later step; they never fail a mission by themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from orchestrator.clients.base import ServiceError
from orchestrator.clients.etl import get_etl_client
from orchestrator.models import Mission, MissionEvent, MissionItem
from orchestrator.states import ItemStatus, MissionStatus

logger = logging.getLogger(__name__)


def start_runs(missions: Iterable[Mission]) -> int:
    """Create (or resume) a scrape run for each newly allocated mission."""
    client = get_etl_client()
    if client is None:
        return 0
    started = 0
    for mission in missions:
        if mission.etl_run_id:
            continue
        try:
            latest = client.get_latest_run_for_domain(mission.domain)
            resuming = latest is not None and latest.status in ("pending", "running")
            if latest is not None and resuming:
                run = client.fetch_scrape_run(latest.id)  # with its items
            else:
                urls = list(
                    MissionItem.objects.filter(mission=mission).values_list("url", flat=True)
                )
                run = client.create_scrape_run(mission.domain, urls)
        except ServiceError as exc:
            logger.warning(
                "ETL run not created for mission %s: %s",
                mission.pk,
                exc.code,
                extra={"mission_id": mission.pk, "error_code": "ETL_UNAVAILABLE"},
            )
            continue
        Mission.objects.filter(pk=mission.pk, etl_run_id="").update(etl_run_id=run.id)
        mission.etl_run_id = run.id
        if resuming:
            _resume(mission, [item.url for item in run.items if item.done])
        started += 1
    return started


def _resume(mission: Mission, done_urls: list[str]) -> int:
    """Items the resumed run already has done are not scraped again."""
    if not done_urls:
        return 0
    with transaction.atomic():
        n = MissionItem.objects.filter(
            mission=mission, url__in=done_urls, status=ItemStatus.PENDING
        ).update(status=ItemStatus.DONE, finished_at=timezone.now())
        if n:
            Mission.objects.filter(pk=mission.pk).update(done_items=F("done_items") + n)
            mission.log(
                MissionEvent.Kind.INFO,
                f"Retomando a execução ETL {mission.etl_run_id}: {n} itens já concluídos",
                now=timezone.now(),
                data={"etl": "resumed", "done": n},
            )
    return n


def finalize_run(mission: Mission) -> bool:
    """Report item outcomes in batches and finalize the mission's run."""
    client = get_etl_client()
    if client is None or not mission.etl_run_id:
        return False
    items = MissionItem.objects.filter(mission=mission).values_list("url", "status", "error_code")
    try:
        run = client.fetch_scrape_run(mission.etl_run_id)
        ids_by_url = {item.url: item.id for item in run.items}
        updates = []
        for url, status, error_code in items.iterator(chunk_size=2000):
            run_item = ids_by_url.get(url)
            if run_item is None:
                continue
            update = {"id": run_item, "done": status == ItemStatus.DONE, "status": status}
            if error_code:
                update["error"] = error_code
            updates.append(update)
        if updates:
            client.update_scrape_run_items(mission.etl_run_id, updates)
        duration = 0.0
        if mission.atribuido_at:
            duration = (
                (mission.finalizado_at or timezone.now()) - mission.atribuido_at
            ).total_seconds()
        client.finalize_scrape_run(
            mission.etl_run_id,
            {
                "total": mission.total_items,
                "done": mission.done_items,
                "failed": mission.failed_items,
                "duration_s": round(duration, 3),
            },
        )
        mission.log(
            MissionEvent.Kind.INFO,
            f"Execução ETL {mission.etl_run_id} finalizada",
            now=timezone.now(),
            data={"etl": "finalized", "run_id": mission.etl_run_id},
        )
    except ServiceError as exc:
        logger.warning(
            "ETL run %s not finalized: %s",
            mission.etl_run_id,
            exc.code,
            extra={"mission_id": mission.pk, "error_code": "ETL_UNAVAILABLE"},
        )
        return False
    return True


def sync_pending(limit: int = 100) -> int:
    """Finalize the ETL runs of finished missions whose finalization failed before
    (the ETL was down): run by a django-q2 schedule, so none is left behind."""
    if get_etl_client() is None:
        return 0
    synced = MissionEvent.objects.filter(mission=OuterRef("pk"), data__etl="finalized")
    pending = (
        Mission.objects.filter(status=MissionStatus.FINALIZADO)
        .exclude(etl_run_id="")
        .filter(~Exists(synced))
        .order_by("id")[:limit]
    )
    return sum(1 for mission in pending if finalize_run(mission))
