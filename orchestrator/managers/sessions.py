"""SessionManager (every 5 s): opens requested sessions, polls each worker once,
detects stuck/disconnected/failed sessions, rotates proxies, closes finished ones."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Q

from orchestrator import allocation, events, pgbatch, proxy_health, worker_capacity
from orchestrator.clients import breaker
from orchestrator.clients.base import ServiceError
from orchestrator.clients.pool import call_all
from orchestrator.clients.worker import ProxySpec, RemoteSession
from orchestrator.crashpoints import crashpoint
from orchestrator.leases import hold, reclaim_orphaned, stale
from orchestrator.managers.base import (
    LIVE_NOT_CLOSING,
    BaseManager,
    TickResult,
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
from registry.models import Worker

REMOTE_STATUS = {
    "creating": SessionStatus.CREATING,
    "ready": SessionStatus.READY,
    "busy": SessionStatus.BUSY,
}
# A session the worker does not list yet right after it was opened is not gone.
DISAPPEAR_GRACE = dt.timedelta(seconds=10)
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
# How often the loop polls workers while a session is still being created.
CREATING_POLL_S = 0.5
# How often the SessionManager frees the leases of gone orchestrator instances.
RECLAIM_EVERY_S = 5.0


class SessionManager(BaseManager):
    name = "sessions"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_backoff = OpenBackoff()

    def tick(self) -> TickResult:
        now, cfg = self.load()
        result = TickResult()
        if self.periodic("reclaim", RECLAIM_EVERY_S):
            result.add("reclaimed", reclaim_orphaned(now, cfg.heartbeat_stale_after_s))
        result.add("closed", self.close_sessions(now, cfg))
        if not cfg.paused:
            result.add("opened", self.open_requested(now, cfg))
        if self.poll_due(cfg):
            polled, ended = self.poll_workers(now, cfg)
            result.add("polled", polled)
            result.add("ended", ended)
        result.add("retired", proxy_health.retire_sessions(now))
        result.add("marked", proxy_health.mark_busy_sessions(now))
        if not cfg.paused:
            result.add("replenished", allocation.replenish_sessions(self.owner, now, cfg))
        return result

    # ------------------------------------------------------------------ open

    def open_requested(self, now: dt.datetime, cfg: Config) -> int:
        leases = allocation.claim(
            BrowserSession,
            Q(status=SessionStatus.REQUESTED),
            owner=self.owner,
            lease_s=cfg.lease_s,
            limit=cfg.claim_batch_size,
        )
        if not leases:
            return 0
        tokens = {lease.id: lease for lease in leases}
        sessions = list(
            BrowserSession.objects.filter(id__in=tokens).select_related(
                "worker", "proxy", "mission"
            )
        )
        opened = 0
        sites = site_configs({s.mission.domain for s in sessions})
        calls: list[tuple[BrowserSession, Callable[[], tuple[RemoteSession, bool]]]] = []
        for session in sessions:
            worker = session.worker
            if not breaker.allow_call(worker, now) or not worker.enabled:
                # The worker is down: the session goes elsewhere; not the mission's fault.
                end_session(
                    session,
                    expected_status=SessionStatus.REQUESTED,
                    status=SessionStatus.FAILED,
                    code=ErrorCode.SESSION_OPEN_FAILED,
                    message=f"worker {worker.name} indisponível",
                    now=now,
                    cfg=cfg,
                    infra=True,
                    remote_holds_slot=True,  # an earlier open may have reached it
                )
                continue
            site = sites[session.mission.domain]
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
            call = partial(
                self.worker_client(worker, cfg).open_session,
                session.session_key,
                provider=session.provider,
                proxy=spec,
                engine=session.engine,
                timeout_s=site.session_timeout_s,
                labels={"mission_id": str(session.mission_id)},
            )
            calls.append((session, call))
        calls = self._admit_opens(calls, tokens, now)
        # The opens of the batch at once (no database in them); their outcomes here.
        answered: list[tuple[BrowserSession, allocation.Lease, RemoteSession]] = []
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
        # Recorded together: one transaction (and one wake-up) for the batch.
        opened += self._record_opened(answered, now)
        self._close_given_up_opens(answered, cfg)
        return opened

    def _close_given_up_opens(
        self,
        answered: list[tuple[BrowserSession, allocation.Lease, RemoteSession]],
        cfg: Config,
    ) -> None:
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
        lease: allocation.Lease,
        worker: Worker,
        exc: ServiceError,
        now: dt.datetime,
        cfg: Config,
    ) -> None:
        if exc.code == "provider_error":
            breaker.record_success(worker, now)
            end_session(
                session,
                expected_status=SessionStatus.REQUESTED,
                status=SessionStatus.FAILED,
                code=ErrorCode.SESSION_PROVIDER_ERROR,
                message=exc.message,
                now=now,
                cfg=cfg,
            )
        elif exc.code == "capacity_exhausted":
            # The worker is full (fuller than we counted): not the mission's fault, nor
            # a failed session. It stays requested and waits for a slot there, the
            # worker's opens backed off meanwhile.
            breaker.record_success(worker, now)
            self.open_backoff.failed(worker.pk, now)
            allocation.release(BrowserSession, lease, self.owner)
        elif exc.infrastructure:
            # Unreachable, overloaded or refusing our key: the worker's fault. The
            # session stays requested and is tried again (same session_key) after the
            # worker's backoff.
            self.service_failed(worker, exc, now, cfg)
            self.open_backoff.failed(worker.pk, now)
            allocation.release(BrowserSession, lease, self.owner)
        else:
            end_session(
                session,
                expected_status=SessionStatus.REQUESTED,
                status=SessionStatus.FAILED,
                code=ErrorCode.SESSION_OPEN_FAILED,
                message=f"{exc.code}: {exc.message}",
                now=now,
                cfg=cfg,
            )

    def _admit_opens(
        self,
        calls: list[tuple[BrowserSession, Callable[[], tuple[RemoteSession, bool]]]],
        tokens: dict[int, allocation.Lease],
        now: dt.datetime,
    ) -> list[tuple[BrowserSession, Callable[[], tuple[RemoteSession, bool]]]]:
        """The opens that may go now: a backed-off worker gets one probe at most; the
        other sessions stay requested (their lease dropped) for a later tick."""
        go, wait = admit(self.open_backoff, [s.worker_id for s, _ in calls], now)
        release_many(BrowserSession, [tokens[calls[i][0].pk] for i in wait], self.owner)
        return [calls[i] for i in go]

    def _record_opened(
        self,
        answered: list[tuple[BrowserSession, allocation.Lease, RemoteSession]],
        now: dt.datetime,
    ) -> int:
        """Record the sessions the workers opened, in one transaction fenced by each
        lease: the rows still ours and still requested take their remote id and
        status; the others (cancelled meanwhile) keep the remote id, so that closing
        them reaches the worker, and their lease is dropped."""
        if not answered:
            return 0
        with transaction.atomic():
            won = hold(
                BrowserSession.objects.filter(
                    leases_q([lease for _, lease, _ in answered]),
                    locked_by=self.owner,
                    status=SessionStatus.REQUESTED,
                )
            )
            opened: list[BrowserSession] = []
            for session, lease, remote in answered:
                if session.pk not in won:
                    allocation.fenced(BrowserSession, lease, self.owner).update(remote_id=remote.id)
                    allocation.release(BrowserSession, lease, self.owner)
                    continue
                session.remote_id = remote.id
                session.provider_session_id = remote.provider_session_id
                session.provider_inspect_url = remote.provider_inspect_url
                session.status = REMOTE_STATUS.get(remote.status, SessionStatus.CREATING)
                session.phase = remote.phase or ""
                session.opened_at = now
                session.last_activity_at = remote.last_activity_at or now
                session.locked_by, session.locked_until, session.updated_at = "", None, now
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

    # ------------------------------------------------------------------ poll

    def poll_due(self, cfg: Config) -> bool:
        """Every `session_tick_s`; sooner (CREATING_POLL_S after the last poll) while a
        session is still being created, so that it starts work as soon as the worker
        has it ready."""
        if self.periodic("poll", cfg.session_tick_s):
            return True
        if self.since("poll") < CREATING_POLL_S:
            return False
        if not BrowserSession.objects.filter(status=SessionStatus.CREATING).exists():
            return False
        return self.periodic("poll", 0)

    def poll_workers(self, now: dt.datetime, cfg: Config) -> tuple[int, int]:
        """One GET /sessions per worker that has live sessions; returns (polled, ended)."""
        watched = [SessionStatus.CREATING, SessionStatus.READY, SessionStatus.BUSY]
        by_worker: dict[int, list[BrowserSession]] = defaultdict(list)
        for session in BrowserSession.objects.filter(status__in=watched).select_related("worker"):
            by_worker[session.worker_id].append(session)
        polled = ended = 0
        stuck_after = dt.timedelta(seconds=cfg.session_stuck_after_s)
        open_timeout = dt.timedelta(seconds=cfg.session_open_timeout_s)
        for sessions in by_worker.values():
            worker = sessions[0].worker
            if not breaker.allow_call(worker, now):
                # Worker offline: its sessions are gone. Replacements are the
                # infrastructure's cost, not the missions'.
                for session in sessions:
                    ended += end_session(
                        session,
                        expected_status=session.status,
                        status=SessionStatus.DISCONNECTED,
                        code=ErrorCode.SESSION_DISCONNECTED,
                        message=f"worker {worker.name} offline",
                        now=now,
                        cfg=cfg,
                        infra=True,
                        remote_holds_slot=True,  # closed on the worker when it answers
                    )
                continue
            try:
                remote_sessions = self.worker_client(worker, cfg).list_sessions()
            except ServiceError as exc:
                self.service_failed(worker, exc, now, cfg)
                continue
            breaker.record_success(worker, now)
            polled += 1
            remote_by_key = {r.session_key: r for r in remote_sessions}
            seen: list[tuple[BrowserSession, RemoteSession]] = []
            for session in sessions:
                remote = remote_by_key.get(session.session_key)
                ended += self._reconcile(session, remote, now, cfg, stuck_after, open_timeout, seen)
            self._touch_many(seen, now)
        return polled, ended

    @staticmethod
    def _touch_many(seen: list[tuple[BrowserSession, RemoteSession]], now: dt.datetime) -> None:
        """What the poll saw of sessions that stay as they are (phase, last activity):
        one UPDATE for all, each row still conditional on the status it was read in."""
        if not seen:
            return
        with transaction.atomic():
            # Locked in id order first, like every batch that locks several sessions.
            still = hold(
                BrowserSession.objects.filter(
                    pgbatch.rows_in(
                        BrowserSession, ["pk", "status"], [(s.pk, s.status) for s, _ in seen]
                    )
                )
            )
            touched: dict[bool, list[BrowserSession]] = {True: [], False: []}
            for session, remote in seen:
                if session.pk not in still:
                    continue
                session.last_polled_at = now
                session.phase = remote.phase or ""
                if remote.last_activity_at:
                    session.last_activity_at = remote.last_activity_at
                touched[bool(remote.last_activity_at)].append(session)
            # A row the worker gave no activity time keeps the one it has.
            pgbatch.bulk_update(
                BrowserSession, touched[True], ["last_polled_at", "phase", "last_activity_at"]
            )
            pgbatch.bulk_update(BrowserSession, touched[False], ["last_polled_at", "phase"])

    def _reconcile(
        self,
        session: BrowserSession,
        remote: RemoteSession | None,
        now: dt.datetime,
        cfg: Config,
        stuck_after: dt.timedelta,
        open_timeout: dt.timedelta,
        seen: list[tuple[BrowserSession, RemoteSession]] | None = None,
    ) -> int:
        def end(status: str, code: ErrorCode, message: str, holds: bool = False) -> int:
            return int(
                end_session(
                    session,
                    expected_status=session.status,
                    status=status,
                    code=code,
                    message=message,
                    now=now,
                    cfg=cfg,
                    remote_holds_slot=holds,
                    remote_code=(remote.error_code or "") if remote else "",
                )
            )

        if remote is None:
            if session.opened_at and now - session.opened_at < DISAPPEAR_GRACE:
                return 0
            return end(
                SessionStatus.DISCONNECTED,
                ErrorCode.SESSION_DISCONNECTED,
                "a sessão sumiu do worker",
            )
        if remote.status in ("failed", "disconnected", "closed"):
            detail = remote.error_message or remote.error_code or remote.status
            code = (
                ErrorCode.SESSION_DISCONNECTED
                if remote.status == "disconnected"
                else ErrorCode.SESSION_FAILED
            )
            status = (
                SessionStatus.DISCONNECTED
                if remote.status == "disconnected"
                else SessionStatus.FAILED
            )
            return end(status, code, f"worker: {detail}")
        last_activity = remote.last_activity_at or session.last_activity_at
        # Inactivity counts only while the worker itself says a job runs: a session it
        # lists `ready` has finished its job, and results we have not read yet are our
        # own stall, never the session's (issue #15, case 2).
        if remote.status == "stuck" or (
            session.status == SessionStatus.BUSY
            and remote.status == "busy"
            and last_activity is not None
            and now - last_activity > stuck_after
        ):
            return end(
                SessionStatus.STUCK,
                ErrorCode.SESSION_STUCK,
                f"sem atividade desde {last_activity:%H:%M:%S}" if last_activity else "travada",
                holds=True,
            )
        if (
            session.status == SessionStatus.CREATING
            and remote.status == "creating"
            and session.opened_at
            and now - session.opened_at > open_timeout
        ):
            return end(SessionStatus.STUCK, ErrorCode.SESSION_OPEN_FAILED, "não ficou pronta", True)

        updates: dict[str, object] = {"last_polled_at": now, "phase": remote.phase or ""}
        if remote.last_activity_at:
            updates["last_activity_at"] = remote.last_activity_at
        qs = BrowserSession.objects.filter(pk=session.pk, status=session.status)
        if session.status == SessionStatus.CREATING and remote.status in ("ready", "busy"):
            if qs.update(status=SessionStatus.READY, **updates):
                events.publish("session.ready", mission_id=session.mission_id)
        elif seen is not None:
            seen.append((session, remote))  # written with the others (`_touch_many`)
        else:
            qs.update(**updates)
        return 0

    # ------------------------------------------------------------------ close

    def close_sessions(self, now: dt.datetime, cfg: Config) -> int:
        """DELETE the sessions we gave up on (closing, stuck, disconnected, failed while
        holding a slot) on their workers, then free their slots (`worker_capacity`)."""
        leases = allocation.claim(
            BrowserSession,
            worker_capacity.awaiting_close_q(now),
            owner=self.owner,
            lease_s=cfg.lease_s,
            limit=cfg.claim_batch_size * 2,
        )
        if not leases:
            return 0
        tokens = {lease.id: lease for lease in leases}
        sessions = list(
            BrowserSession.objects.filter(id__in=tokens).select_related("worker").order_by("id")
        )
        # Worker unreachable: the DELETE waits for it (the slot stays held), unless the
        # worker's own idle timeout closed the session long ago.
        calling = [s for s in sessions if breaker.allow_call(s.worker, now)]
        outcomes = call_all([partial(self._delete_remote, s, s.worker, cfg) for s in calling])
        errors = {s.pk: o.error for s, o in zip(calling, outcomes, strict=True)}
        closing: list[BrowserSession] = []
        for session in sessions:
            lease = tokens[session.pk]
            if session.pk in errors:
                exc = errors[session.pk]
                if exc is None:
                    crashpoint("after_session_close")
                    breaker.record_success(session.worker, now)
                elif exc.infrastructure:
                    self.service_failed(session.worker, exc, now, cfg)
                    allocation.release(BrowserSession, lease, self.owner)
                    continue
            elif not worker_capacity.worker_closed_it_itself(session, now):
                allocation.release(BrowserSession, lease, self.owner)
                continue
            closing.append(session)
        if not closing:
            return 0
        with transaction.atomic():
            # One fenced write per final status; the rows that matched are the winners.
            won: list[BrowserSession] = []
            for final in {self._final_status(s) for s in closing}:
                group = [s for s in closing if self._final_status(s) == final]
                ids = hold(
                    BrowserSession.objects.filter(
                        leases_q([tokens[s.pk] for s in group]),
                        locked_by=self.owner,
                        holds_slot=True,
                    )
                )
                if not ids:
                    continue
                BrowserSession.objects.filter(pk__in=ids).update(
                    holds_slot=False,
                    status=final,
                    closed_at=now,
                    locked_by="",
                    locked_until=None,
                    job_key="",
                    job_status="",
                    updated_at=now,
                )
                won.extend(s for s in group if s.pk in ids)
            for session in closing:
                if session.pk not in {s.pk for s in won}:
                    stale(f"session {session.session_key}", "close", session.mission_id)
            allocation.release_slots(won)
            for session in won:
                events.publish("capacity.freed", mission_id=session.mission_id)
        return len(won)

    @staticmethod
    def _final_status(session: BrowserSession) -> str:
        return SessionStatus.CLOSED if session.status == SessionStatus.CLOSING else session.status

    def _delete_remote(self, session: BrowserSession, worker: Worker, cfg: Config) -> None:
        client = self.worker_client(worker, cfg)
        remote_id = session.remote_id
        if not remote_id:
            # Opened remotely but not recorded (a crash between the call and the write):
            # find it by its idempotency key.
            for remote in client.list_sessions():
                if remote.session_key == session.session_key:
                    remote_id = remote.id
                    break
        if remote_id:
            client.close_session(remote_id)


__all__ = ["SessionManager"]
