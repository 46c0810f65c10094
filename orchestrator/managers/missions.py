"""MissionManager (every 10 s): claims due QUEUED missions and allocates them; moves
missions through ARMAZENANDO and FINALIZADO; applies the retry policy; reaps leases."""

from __future__ import annotations

import datetime as dt
from functools import partial

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q

from orchestrator import allocation, leases, quality, uploads
from orchestrator.clients import breaker
from orchestrator.clients.pool import call_all
from orchestrator.crashpoints import crashpoint
from orchestrator.managers.base import (
    BaseManager,
    Move,
    TickResult,
    close_sessions_of,
    fail_attempt,
    lock_live_sessions,
    logger,
    transition_many,
    writers_for,
)
from orchestrator.models import Mission, MissionItem
from orchestrator.states import SESSION_LIVE, ErrorCode, ItemStatus, MissionStatus
from registry import quality_rules
from registry.config import Config
from registry.models import Writer

RUNNING = [MissionStatus.ATRIBUIDO, MissionStatus.EXTRAINDO]
FINALIZE_BATCHES = 4  # missions finalized per tick: claim_batch_size times this


class MissionManager(BaseManager):
    name = "missions"

    def tick(self) -> TickResult:
        now, cfg = self.load()
        result = TickResult()
        leases.reap_expired_leases()
        if not cfg.paused:
            claimed = allocation.claim_due_missions(self.owner, now, cfg)
            if claimed:
                crashpoint("after_mission_claim")
            result.add("allocated", sum(1 for _, a in claimed if a.sessions))
        result.add("advanced", self.advance_running(now, cfg))
        result.add("finalized", self.finalize(now, cfg))
        result.add("uploaded", uploads.run(cfg))
        return result

    # ------------------------------------------------------------------ running

    def advance_running(self, now: dt.datetime, cfg: Config) -> int:
        """Missions whose items are all settled go to ARMAZENANDO; missions with
        pending work, no live session and no rotations left fail their attempt."""
        unsettled = Exists(
            MissionItem.objects.filter(
                mission=OuterRef("pk"), status__in=[ItemStatus.PENDING, ItemStatus.ASSIGNED]
            )
        )
        moved = 0
        settled = list(
            Mission.objects.filter(status__in=RUNNING).filter(~unsettled).order_by("id")[:200]
        )
        moves: list[Move] = []
        for mission in settled:
            if mission.total_items and mission.done_items == 0 and mission.failed_items > 0:
                moved += fail_attempt(
                    mission,
                    ErrorCode.SCRAPE_ALL_ITEMS_FAILED,
                    f"todos os {mission.failed_items} itens falharam",
                    now,
                    cfg,
                    self.rng,
                )
                continue
            moves.append(
                Move(
                    mission,
                    f"{mission.done_items} itens concluídos, {mission.failed_items} falharam",
                )
            )
        with transaction.atomic():
            lock_live_sessions([move.mission.pk for move in moves])
            won = transition_many(moves, MissionStatus.ARMAZENANDO, now=now, wait_reason="")
            close_sessions_of([m.pk for m in won], now)
        moved += len(won)
        exhausted = (
            Mission.objects.filter(
                status__in=RUNNING, session_rotations__gt=cfg.max_session_rotations
            )
            .filter(unsettled)
            .annotate(
                live=Count(
                    "sessions",
                    filter=Q(sessions__status__in=SESSION_LIVE),
                )
            )
            .filter(live=0)
        )
        for mission in exhausted[:100]:
            moved += fail_attempt(
                mission,
                ErrorCode.SESSION_ROTATIONS_EXHAUSTED,
                f"{mission.session_rotations} sessões substituídas nesta tentativa",
                now,
                cfg,
                self.rng,
            )
        return moved

    # ------------------------------------------------------------------ storing

    def finalize(self, now: dt.datetime, cfg: Config) -> int:
        """Tell the writer each ARMAZENANDO mission is complete, then FINALIZADO (all the
        confirmed ones of the batch in one fenced, compare-and-set transition)."""
        claimed = leases.claim(
            Mission,
            Q(status=MissionStatus.ARMAZENANDO),
            owner=self.owner,
            lease_s=cfg.lease_s,
            # One writer call per mission and a few statements for the batch: as the
            # other per-call lanes (dispatch, results), several claims' worth a tick.
            limit=cfg.claim_batch_size * FINALIZE_BATCHES,
        )
        if not claimed:
            return 0
        missions = list(Mission.objects.filter(pk__in=[lease.id for lease in claimed]))
        by_id = {m.pk: m for m in missions}
        writers = writers_for(missions)
        rules = quality_rules.rules_for_domains({m.domain for m in missions})
        moves: list[Move] = []
        calls: list[tuple[Mission, leases.Lease, Writer]] = []
        for lease in claimed:
            mission = by_id.get(lease.id)
            if mission is None:
                continue
            writer = writers[mission.pk]
            if writer is None:
                leases.release(Mission, lease, self.owner, wait_reason="WRITER_NOT_CONFIGURED")
                continue
            if not breaker.allow_call(writer, now):
                leases.release(
                    Mission,
                    lease,
                    self.owner,
                    wait_reason=f"WRITER_UNAVAILABLE: writer {writer.name} indisponível",
                )
                continue
            calls.append((mission, lease, writer))
        # The writer calls of the batch at once (no database in them), outcomes here.
        outcomes = call_all(
            [
                partial(
                    self.writer_client(writer, cfg).complete_mission,
                    mission.pk,
                    mission.etl_run_id or None,
                    mission.records_delivered,
                )
                for mission, _, writer in calls
            ]
        )
        for (mission, lease, writer), outcome in zip(calls, outcomes, strict=True):
            if outcome.error is not None:
                exc = outcome.error
                if exc.infrastructure:
                    self.service_failed(writer, exc, now, cfg)
                    leases.release(
                        Mission,
                        lease,
                        self.owner,
                        wait_reason=f"WRITER_UNAVAILABLE: {exc.code}"[:500],
                    )
                    continue
                code = (
                    ErrorCode.WRITER_COUNT_MISMATCH
                    if exc.code == "count_mismatch"
                    else ErrorCode.WRITER_REJECTED
                )
                fail_attempt(
                    mission,
                    code,
                    f"{exc.code}: {exc.message}",
                    now,
                    cfg,
                    self.rng,
                    lease_token=lease.token,
                )
                continue
            ack = outcome.value
            assert ack is not None
            crashpoint("after_writer_complete")
            breaker.record_success(writer, now)
            moves.append(
                Move(
                    mission,
                    f"Writer confirmou {ack.stored_records} registros",
                    data={"stored_records": ack.stored_records},
                    lease_token=lease.token,
                    fields=quality.check(mission, rules[mission.domain]).fields(),
                )
            )
        with transaction.atomic():
            lock_live_sessions([move.mission.pk for move in moves])
            won = transition_many(
                moves,
                MissionStatus.FINALIZADO,
                now=now,
                locked_by="",
                locked_until=None,
                wait_reason="",
            )
            quality.record_reviews(won)
            close_sessions_of([m.pk for m in won], now)
        finalized = {m.pk for m in won}
        for move in moves:
            mission = move.mission
            if mission.pk not in finalized:
                leases.stale(f"mission {mission.pk}", "finalization", mission.pk)
                continue
            logger.info(
                "mission %s finalized with %s records",
                mission.pk,
                (move.data or {}).get("stored_records"),
                extra={"mission_id": mission.pk, "attempt": mission.attempt},
            )
        return len(finalized)


__all__ = ["MissionManager"]
