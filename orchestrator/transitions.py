"""Transitions: missions and sessions move here, compare-and-set, in one lock order.

The lock order everywhere is sessions, then missions, each in id order (`docs/engine.md`):
`lock_live_sessions` takes a mission's live sessions before the mission row; batched
transitions lock their missions in id order; closing a mission's sessions bumps their
lease tokens so a process still working on one is fenced out.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import F, Q

from orchestrator import events, fault_blame, pgbatch, states
from orchestrator.leases import hold, update_in_id_order
from orchestrator.models import (
    BrowserSession,
    Mission,
    MissionEvent,
    MissionItem,
    after_transition,
)
from orchestrator.slots import release_slot
from orchestrator.states import ErrorCode, ItemStatus, MissionStatus, RetryPolicy, SessionStatus
from registry.config import Config
from registry.models import Proxy

logger = logging.getLogger("orchestrator")


def retry_policy(cfg: Config) -> RetryPolicy:
    return RetryPolicy(
        max_retries=cfg.max_retries,
        base_s=cfg.retry_backoff_base_s,
        cap_s=cfg.retry_backoff_cap_s,
        jitter=cfg.retry_jitter,
    )


def _status_label(status: str) -> str:
    """A session state as read in an event: "falhou", not "failed"."""
    return {"failed": "falhou", "stuck": "travou", "disconnected": "desconectou"}.get(
        status, SessionStatus(status).label.lower() if status in SessionStatus.values else status
    )


def end_session(
    session: BrowserSession,
    *,
    expected_status: str,
    status: str,
    code: ErrorCode,
    message: str,
    now: dt.datetime,
    cfg: Config,
    infra: bool = False,
    remote_holds_slot: bool = False,
    remote_code: str = "",
) -> bool:
    """A session failed, got stuck or disconnected: give its unfinished items back,
    rest its proxy (unless the fault is the infrastructure's), count a rotation and
    free its slot (now, or after the worker confirms the close when it still holds it).

    Compare-and-set on `expected_status`; bumps the lease token so that any process
    still working on the session is fenced out. Returns whether this call won.
    """
    with transaction.atomic():
        updates: dict[str, Any] = {
            "status": status,
            "error_code": code.value,
            "error_message": message[:2000],
            "job_key": "",
            "job_status": "",
            "job_remote_id": "",
            "locked_by": "",
            "locked_until": None,
            "lease_token": F("lease_token") + 1,
            "updated_at": now,
        }
        release = session.holds_slot and not remote_holds_slot
        if release:
            updates["holds_slot"] = False
            updates["closed_at"] = now
        won = (
            BrowserSession.objects.filter(pk=session.pk, status=expected_status).update(**updates)
            == 1
        )
        if not won:
            return False
        if release:
            release_slot(session)
        returned = MissionItem.objects.filter(session=session, status=ItemStatus.ASSIGNED).update(
            status=ItemStatus.PENDING, session=None, job_key=""
        )
        if not infra:
            Mission.objects.filter(pk=session.mission_id).update(
                session_rotations=F("session_rotations") + 1
            )
            if session.proxy_id:
                Proxy.objects.get(pk=session.proxy_id).start_cooldown(
                    now, cfg.proxy_cooldown_s, f"{code.value}: {message}"[:500]
                )
        MissionEvent.objects.create(
            mission_id=session.mission_id,
            kind=MissionEvent.Kind.SESSION,
            attempt=session.attempt,
            error_code=code.value,
            message=f"Sessão {session.session_key} {_status_label(status)}: {message}"[:2000]
            + (
                f" ({returned} {'item devolvido' if returned == 1 else 'itens devolvidos'})"
                if returned
                else ""
            ),
            data={
                "session": session.session_key,
                "proxy": session.proxy_external_id,
                "infra": infra,
                "fault": fault_blame.session_fault(code, remote_code, infra=infra),
            },
            created_at=now,
        )
        events.publish("session.failed", mission_id=session.mission_id)
    logger.info(
        "session %s ended as %s (%s): %s",
        session.session_key,
        status,
        code.value,
        message,
        extra={"mission_id": session.mission_id, "error_code": code.value},
    )
    return True


def close_mission_sessions(mission_id: int, now: dt.datetime) -> int:
    """Ask the SessionManager to close every live session of a mission."""
    n = _mark_closing(Q(mission_id=mission_id), now)
    if n:
        events.publish("session.closing", mission_id=mission_id)
    return n


def fail_attempt(
    mission: Mission,
    code: ErrorCode,
    message: str,
    now: dt.datetime,
    cfg: Config,
    rng: random.Random,
    *,
    lease_token: int | None = None,
) -> bool:
    """An attempt failed: back to QUEUED with backoff while retries last, else ERRO.
    Done items are kept; items in flight go back to pending."""
    attempt = mission.attempt
    decision = states.decide_retry(retry_policy(cfg), attempt, code, now, rng)
    with transaction.atomic():
        lock_live_sessions([mission.pk])
        if decision.retry:
            won = mission.transition(
                MissionStatus.QUEUED,
                now=now,
                error_code=code.value,
                message=f"Tentativa {attempt} falhou: {message}",
                lease_token=lease_token,
                attempt=decision.next_attempt,
                next_attempt_at=decision.next_attempt_at,
                session_rotations=0,
                locked_by="",
                locked_until=None,
            )
        else:
            won = mission.transition(
                MissionStatus.ERRO,
                now=now,
                error_code=code.value,
                message=message,
                lease_token=lease_token,
                locked_by="",
                locked_until=None,
                wait_reason="",
            )
        if won:
            close_mission_sessions(mission.pk, now)
            MissionItem.objects.filter(mission=mission, status=ItemStatus.ASSIGNED).update(
                status=ItemStatus.PENDING, session=None, job_key=""
            )
    if won:
        logger.info(
            "mission %s attempt %s failed with %s: %s",
            mission.pk,
            attempt,
            code.value,
            "retrying" if decision.retry else "giving up",
            extra={"mission_id": mission.pk, "attempt": attempt, "error_code": code.value},
        )
    return won


LIVE_NOT_CLOSING = Q(status__in=states.SESSION_LIVE) & ~Q(status=SessionStatus.CLOSING)


@dataclass
class Move:
    """One mission of a batched transition: its event text and, for fenced writes, the
    lease token it was claimed with; `fields` are written on this mission only."""

    mission: Mission
    message: str = ""
    data: dict[str, Any] | None = None
    lease_token: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def transition_many(
    moves: list[Move], to: str, *, now: dt.datetime, **fields: Any
) -> list[Mission]:
    """`Mission.transition` for many missions in a few statements instead of a few per
    mission: lock the rows that still are in their expected status (and lease), update
    them, insert their events in one INSERT. Compare-and-set as before: a mission that
    moved meanwhile (or whose lease went stale) is left alone and not returned.
    Returns the missions that moved; their instances reflect the new row."""
    if not moves:
        return []
    won: list[Mission] = []
    checkpoint = states.CHECKPOINTS.get(to)
    with transaction.atomic():
        plain: list[tuple[Any, ...]] = []
        leased: list[tuple[Any, ...]] = []
        for move in moves:
            src = move.mission.status
            if not states.can_transition(src, to):
                raise ValueError(f"illegal transition {src} -> {to}")
            if move.lease_token is None:
                plain.append((move.mission.pk, src))
            else:
                leased.append((move.mission.pk, src, move.lease_token))
        cond = pgbatch.rows_in(Mission, ["pk", "status"], plain) | pgbatch.rows_in(
            Mission, ["pk", "status", "lease_token"], leased
        )
        # Row locks in id order (no deadlock between batches); the WHERE is re-checked
        # on the locked row, so the ids returned are exactly the compare-and-set winners.
        locked = hold(Mission.objects.filter(cond))
        if not locked:
            return []
        at = _not_before_checkpoints(locked, now)
        groups: dict[str, tuple[dict[str, Any], list[Move]]] = {}
        for move in moves:
            if move.mission.pk not in locked:
                continue
            when = at[move.mission.pk]
            updates = {**fields, **move.fields, "status": to, "updated_at": when}
            if checkpoint:
                updates.setdefault(checkpoint, when)
            key = repr(sorted(updates.items()))
            groups.setdefault(key, (updates, []))[1].append(move)
        sources = {m.mission.pk: m.mission.status for m in moves}
        for updates, group in groups.values():
            Mission.objects.filter(pk__in=[m.mission.pk for m in group]).update(**updates)
            for move in group:
                for name, value in updates.items():
                    setattr(move.mission, name, value)
                won.append(move.mission)
        by_id = {m.mission.pk: m for m in moves}
        pgbatch.insert(
            MissionEvent,
            [
                {
                    "mission_id": mission.pk,
                    "kind": MissionEvent.Kind.TRANSITION.value,
                    "from_status": sources[mission.pk],
                    "to_status": to,
                    "attempt": mission.attempt,
                    "message": by_id[mission.pk].message,
                    "data": by_id[mission.pk].data or {},
                    "created_at": at[mission.pk],
                }
                for mission in won
            ],
        )
        after_transition(won, to, now)
    for mission in won:
        events.publish(f"mission.{to.lower()}", mission_id=mission.pk)
    return won


def _not_before_checkpoints(ids: Iterable[int], now: dt.datetime) -> dict[int, dt.datetime]:
    """The time each mission's transition is recorded at: `now`, or its latest
    checkpoint if that is later (two managers' ticks started in the other order; or
    another host's clock), so checkpoints and transition events stay in order
    (issue #15 case 8: `extraindo_at` was recorded before `atribuido_at`)."""
    fields = list(states.CHECKPOINTS.values())
    at: dict[int, dt.datetime] = {}
    for pk, *marks in Mission.objects.filter(pk__in=list(ids)).values_list("pk", *fields):
        at[pk] = max([now, *(m for m in marks if m is not None)])
    return at


def close_sessions_of(mission_ids: list[int], now: dt.datetime) -> int:
    """`close_mission_sessions` for many missions in one statement."""
    if not mission_ids:
        return 0
    n = _mark_closing(Q(mission_id__in=mission_ids), now)
    if n:
        events.publish("session.closing", mission_ids=mission_ids)
    return n


def lock_live_sessions(mission_ids: list[int]) -> None:
    """Lock the live sessions of these missions, in id order, before their mission rows.

    The lock order everywhere is sessions, then missions (page recording and job
    dispatch fence their sessions, then update their missions; a failing session
    updates itself, then counts a rotation on its mission). Paths that move missions
    and then close their sessions call this first, inside their transaction, so they
    keep that order: taking the missions first deadlocked against a failing session in
    a chaos run."""
    if not mission_ids:
        return
    hold(BrowserSession.objects.filter(mission_id__in=mission_ids, status__in=states.SESSION_LIVE))


def _mark_closing(missions: Q, now: dt.datetime) -> int:
    """Mark the live sessions matching `missions` CLOSING (fencing out their current
    lease holders). The rows are locked in id order first, as every batch that locks
    several sessions does, so two batches never wait on each other in a cycle."""
    live = BrowserSession.objects.filter(missions, status__in=states.SESSION_LIVE).exclude(
        status=SessionStatus.CLOSING
    )
    return update_in_id_order(
        live,
        status=SessionStatus.CLOSING,
        updated_at=now,
        lease_token=F("lease_token") + 1,
        locked_by="",
        locked_until=None,
    )
