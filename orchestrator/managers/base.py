"""What the three managers share: identity, config snapshot, clients, session endings."""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from orchestrator import allocation, events, states
from orchestrator.clients import breaker
from orchestrator.clients.base import ServiceError
from orchestrator.clients.worker import WorkerClient
from orchestrator.clients.writer import WriterClient
from orchestrator.models import BrowserSession, Mission, MissionEvent, MissionItem
from orchestrator.states import ErrorCode, ItemStatus, MissionStatus, RetryPolicy, SessionStatus
from registry import config
from registry.config import Config
from registry.models import Proxy, Worker, Writer

logger = logging.getLogger("orchestrator")


@dataclass
class TickResult:
    """What one tick did, by action name; `did_work` tells the loop to drain again."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, n: int = 1) -> None:
        if n:
            self.counts[key] = self.counts.get(key, 0) + n

    @property
    def did_work(self) -> bool:
        return any(self.counts.values())


class BaseManager:
    name = "base"

    def __init__(
        self,
        owner: str,
        *,
        worker_client: Callable[[Worker, Config], WorkerClient] | None = None,
        writer_client: Callable[[Writer, Config], WriterClient] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.owner = owner
        self._worker_client = worker_client or WorkerClient.for_worker
        self._writer_client = writer_client or WriterClient.for_writer
        self.rng = rng or random.Random()

    # -- clients and breakers

    def worker_client(self, worker: Worker, cfg: Config) -> WorkerClient:
        return self._worker_client(worker, cfg)

    def writer_client(self, writer: Writer, cfg: Config) -> WriterClient:
        return self._writer_client(writer, cfg)

    def service_failed(
        self, service: Any, exc: ServiceError, now: dt.datetime, cfg: Config
    ) -> None:
        """An infrastructure fault: count it against the service, never a mission."""
        breaker.record_failure(
            service,
            now,
            f"{exc.code}: {exc.message}",
            threshold=cfg.circuit_failure_threshold,
            open_s=cfg.circuit_open_s,
        )

    def tick(self) -> TickResult:
        raise NotImplementedError

    @staticmethod
    def load() -> tuple[dt.datetime, Config]:
        return timezone.now(), config.load()


def retry_policy(cfg: Config) -> RetryPolicy:
    return RetryPolicy(
        max_retries=cfg.max_retries,
        base_s=cfg.retry_backoff_base_s,
        cap_s=cfg.retry_backoff_cap_s,
        jitter=cfg.retry_jitter,
    )


def writer_for(mission: Mission) -> Writer | None:
    if mission.writer_id:
        return Writer.objects.filter(pk=mission.writer_id, enabled=True).first()
    return Writer.objects.filter(is_default=True, enabled=True).first()


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
            allocation.release_slot(session)
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
            message=f"Sessão {session.session_key} {status}: {message}"[:2000]
            + (f" ({returned} itens devolvidos)" if returned else ""),
            data={
                "session": session.session_key,
                "proxy": session.proxy_external_id,
                "infra": infra,
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
    n = (
        BrowserSession.objects.filter(mission_id=mission_id, status__in=states.SESSION_LIVE)
        .exclude(status=SessionStatus.CLOSING)
        .update(status=SessionStatus.CLOSING, updated_at=now, lease_token=F("lease_token") + 1)
    )
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
