"""SessionManager, opening: requested sessions are opened on their workers (the calls of
a batch at once, a backed-off worker probed once), then recorded fenced by each lease."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Q

from orchestrator import events, leases, pgbatch
from orchestrator.clients import breaker
from orchestrator.clients.base import ServiceError
from orchestrator.clients.pool import call_all
from orchestrator.clients.worker import ProxySpec, RemoteSession
from orchestrator.crashpoints import crashpoint
from orchestrator.managers.base import (
    LIVE_NOT_CLOSING,
    BaseManager,
    end_session,
    leases_q,
    logger,
    release_many,
    site_configs,
)
from orchestrator.models import BrowserSession
from orchestrator.open_backoff import OpenBackoff, admit
from orchestrator.states import ErrorCode, SessionStatus
from registry.config import Config
from registry.models import SiteConfig, Worker

REMOTE_STATUS = {
    "creating": SessionStatus.CREATING,
    "ready": SessionStatus.READY,
    "busy": SessionStatus.BUSY,
}
# What recording an opened session writes.
OPENED_FIELDS = [
    "remote_id",
    "provider_session_id",
    "provider_inspect_url",
    "status",
    "phase",
    "opened_at",
    "last_activity_at",
    "locked_by",
    "locked_until",
    "updated_at",
]

# A session and the call that opens it on its worker.
OpenCall = tuple[BrowserSession, Callable[[], tuple[RemoteSession, bool]]]
# A session the worker opened: its lease and the worker's answer.
Answered = tuple[BrowserSession, leases.Lease, RemoteSession]


class SessionOpening(BaseManager):
    """Opens requested sessions (`SessionManager.open_requested`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_backoff = OpenBackoff()

    def open_requested(self, now: dt.datetime, cfg: Config) -> int:
        claimed = leases.claim(
            BrowserSession,
            Q(status=SessionStatus.REQUESTED),
            owner=self.owner,
            lease_s=cfg.lease_s,
            limit=cfg.claim_batch_size,
        )
        if not claimed:
            return 0
        tokens = {lease.id: lease for lease in claimed}
        sessions = list(
            BrowserSession.objects.filter(id__in=tokens).select_related(
                "worker", "proxy", "mission"
            )
        )
        calls = self._admit_opens(self._open_calls(sessions, now, cfg), tokens, now)
        answered = self._call_opens(calls, tokens, now, cfg)
        # Recorded together: one transaction (and one wake-up) for the batch.
        opened = self._record_opened(answered, now)
        self._close_given_up_opens(answered, cfg)
        return opened

    def _open_calls(
        self, sessions: list[BrowserSession], now: dt.datetime, cfg: Config
    ) -> list[OpenCall]:
        """The open call of each session whose worker may be called; the others fail."""
        sites = site_configs({s.mission.domain for s in sessions})
        calls: list[OpenCall] = []
        for session in sessions:
            worker = session.worker
            if not breaker.allow_call(worker, now) or not worker.enabled:
                # The worker is down: the session goes elsewhere; not the mission's fault.
                _not_opened(
                    session,
                    ErrorCode.SESSION_OPEN_FAILED,
                    f"worker {worker.name} indisponível",
                    now,
                    cfg,
                    infra=True,
                    remote_holds_slot=True,  # an earlier open may have reached it
                )
                continue
            calls.append((session, self._open_call(session, sites[session.mission.domain], cfg)))
        return calls

    def _open_call(
        self, session: BrowserSession, site: SiteConfig, cfg: Config
    ) -> Callable[[], tuple[RemoteSession, bool]]:
        proxy = session.proxy
        spec = (
            ProxySpec(
                id=proxy.external_id,
                type=proxy.type,
                url=proxy.url(),
                # A managed proxy's country is the site's, chosen at allocation.
                country=session.proxy_country or proxy.country,
            )
            if proxy
            else None
        )
        return partial(
            self.worker_client(session.worker, cfg).open_session,
            session.session_key,
            provider=session.provider,
            proxy=spec,
            engine=session.engine,
            timeout_s=site.session_timeout_s,
            labels={"mission_id": str(session.mission_id)},
        )

    def _call_opens(
        self,
        calls: list[OpenCall],
        tokens: dict[int, leases.Lease],
        now: dt.datetime,
        cfg: Config,
    ) -> list[Answered]:
        """The opens of the batch at once (no database in them); their outcomes here."""
        answered: list[Answered] = []
        for session, outcome in zip(
            [session for session, _ in calls], call_all([call for _, call in calls]), strict=True
        ):
            lease = tokens[session.pk]
            if outcome.error is not None:
                self._open_failed(session, lease, session.worker, outcome.error, now, cfg)
                continue
            assert outcome.value is not None
            remote, _created = outcome.value
            crashpoint("after_session_open")
            breaker.record_success(session.worker, now)
            self.open_backoff.succeeded(session.worker_id)
            answered.append((session, lease, remote))
        return answered

    def _close_given_up_opens(self, answered: list[Answered], cfg: Config) -> None:
        """Opens the worker answered after their row was given up (cancelled while the
        call was in flight): the close step may have looked for the session by its key
        before the worker had it, found nothing and freed the row, so nobody else will
        close it. Close it here, after the write (no lock held across the calls; a
        second DELETE of a session is harmless). Issue #15 case 5: a session of a
        cancelled mission left open on the worker."""
        if not answered:
            return
        given_up = set(
            BrowserSession.objects.filter(pk__in=[s.pk for s, _, _ in answered])
            .exclude(LIVE_NOT_CLOSING)
            .values_list("id", flat=True)
        )
        lost = [(s, remote) for s, _, remote in answered if s.pk in given_up]
        for (session, _remote), outcome in zip(
            lost,
            call_all(
                [partial(self.worker_client(s.worker, cfg).close_session, r.id) for s, r in lost]
            ),
            strict=True,
        ):
            logger.info(
                "session %s opened after it was given up: closed on %s (%s)",
                session.session_key,
                session.worker.name,
                "ok" if outcome.error is None else outcome.error.code,
                extra={"mission_id": session.mission_id},
            )

    def _open_failed(
        self,
        session: BrowserSession,
        lease: leases.Lease,
        worker: Worker,
        exc: ServiceError,
        now: dt.datetime,
        cfg: Config,
    ) -> None:
        if exc.code == "provider_error":
            breaker.record_success(worker, now)
            _not_opened(session, ErrorCode.SESSION_PROVIDER_ERROR, exc.message, now, cfg)
        elif exc.code == "capacity_exhausted":
            # The worker is full (fuller than we counted): not the mission's fault, nor
            # a failed session. It stays requested and waits for a slot there, the
            # worker's opens backed off meanwhile.
            breaker.record_success(worker, now)
            self.open_backoff.failed(worker.pk, now)
            leases.release(BrowserSession, lease, self.owner)
        elif exc.infrastructure:
            # Unreachable, overloaded or refusing our key: the worker's fault. The
            # session stays requested and is tried again (same session_key) after the
            # worker's backoff.
            self.service_failed(worker, exc, now, cfg)
            self.open_backoff.failed(worker.pk, now)
            leases.release(BrowserSession, lease, self.owner)
        else:
            message = f"{exc.code}: {exc.message}"
            _not_opened(session, ErrorCode.SESSION_OPEN_FAILED, message, now, cfg)

    def _admit_opens(
        self,
        calls: list[OpenCall],
        tokens: dict[int, leases.Lease],
        now: dt.datetime,
    ) -> list[OpenCall]:
        """The opens that may go now: a backed-off worker gets one probe at most; the
        other sessions stay requested (their lease dropped) for a later tick."""
        go, wait = admit(self.open_backoff, [s.worker_id for s, _ in calls], now)
        release_many(BrowserSession, [tokens[calls[i][0].pk] for i in wait], self.owner)
        return [calls[i] for i in go]

    def _record_opened(self, answered: list[Answered], now: dt.datetime) -> int:
        """Record the sessions the workers opened, in one transaction fenced by each
        lease: the rows still ours and still requested take their remote id and
        status; the others (cancelled meanwhile) keep the remote id, so that closing
        them reaches the worker, and their lease is dropped."""
        if not answered:
            return 0
        with transaction.atomic():
            won = leases.hold(
                BrowserSession.objects.filter(
                    leases_q([lease for _, lease, _ in answered]),
                    locked_by=self.owner,
                    status=SessionStatus.REQUESTED,
                )
            )
            opened: list[BrowserSession] = []
            for session, lease, remote in answered:
                if session.pk not in won:
                    leases.fenced(BrowserSession, lease, self.owner).update(remote_id=remote.id)
                    leases.release(BrowserSession, lease, self.owner)
                    continue
                _take_remote(session, remote, now)
                opened.append(session)
            pgbatch.bulk_update(BrowserSession, opened, OPENED_FIELDS)
            for session in opened:
                if session.status == SessionStatus.READY:
                    events.publish("session.ready", mission_id=session.mission_id)
        for session in opened:
            logger.info(
                "session %s opened on %s as %s",
                session.session_key,
                session.worker.name,
                session.status,
                extra={"mission_id": session.mission_id},
            )
        return len(opened)


def _take_remote(session: BrowserSession, remote: RemoteSession, now: dt.datetime) -> None:
    """What the worker said of the session it opened, on the row (`OPENED_FIELDS`)."""
    session.remote_id = remote.id
    session.provider_session_id = remote.provider_session_id
    session.provider_inspect_url = remote.provider_inspect_url
    session.status = REMOTE_STATUS.get(remote.status, SessionStatus.CREATING)
    session.phase = remote.phase or ""
    session.opened_at = now
    session.last_activity_at = remote.last_activity_at or now
    session.locked_by, session.locked_until, session.updated_at = "", None, now


def _not_opened(
    session: BrowserSession,
    code: ErrorCode,
    message: str,
    now: dt.datetime,
    cfg: Config,
    *,
    infra: bool = False,
    remote_holds_slot: bool = False,
) -> None:
    """A requested session that will not open: it fails (`end_session`)."""
    end_session(
        session,
        expected_status=SessionStatus.REQUESTED,
        status=SessionStatus.FAILED,
        code=code,
        message=message,
        now=now,
        cfg=cfg,
        infra=infra,
        remote_holds_slot=remote_holds_slot,
    )
