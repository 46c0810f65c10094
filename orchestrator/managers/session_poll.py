"""SessionManager, polling: one GET /sessions per worker with live sessions, and each
session reconciled with what its worker says (ready, gone, failed, stuck, or just
touched: phase and last activity)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db import transaction
from django.db.models import QuerySet

from orchestrator import events, leases, pgbatch
from orchestrator.clients import breaker
from orchestrator.clients.base import ServiceError
from orchestrator.clients.worker import RemoteSession
from orchestrator.managers.base import BaseManager, end_session
from orchestrator.models import BrowserSession
from orchestrator.states import ErrorCode, SessionStatus
from registry.config import Config
from registry.models import Worker

# A session the worker does not list yet right after it was opened is not gone.
DISAPPEAR_GRACE = dt.timedelta(seconds=10)
# How often the loop polls workers while a session is still being created.
CREATING_POLL_S = 0.5
# `last_polled_at` is for people (the API), not for the engine: a session whose phase
# and activity did not change is written at most this often, which keeps the poll's
# writes (and its row locks beside the dispatch and results lanes) off busy sessions.
POLL_MARK_EVERY = dt.timedelta(seconds=30)

# How a session ends: its status, error code, message, and whether the worker still
# holds its slot (it is then closed there).
Ending = tuple[str, ErrorCode, str, bool]
# Sessions that stay as they are, with what the poll saw of them.
Seen = list[tuple[BrowserSession, RemoteSession]]


class SessionPolling(BaseManager):
    """Polls workers and reconciles their sessions (`SessionManager.poll_workers`)."""

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
        for sessions in by_worker.values():
            worker = sessions[0].worker
            if not breaker.allow_call(worker, now):
                ended += _worker_offline(sessions, worker, now, cfg)
                continue
            try:
                remote_sessions = self.worker_client(worker, cfg).list_sessions()
            except ServiceError as exc:
                self.service_failed(worker, exc, now, cfg)
                continue
            breaker.record_success(worker, now)
            polled += 1
            ended += self._reconcile_all(sessions, remote_sessions, now, cfg)
        return polled, ended

    def _reconcile_all(
        self,
        sessions: list[BrowserSession],
        remote_sessions: list[RemoteSession],
        now: dt.datetime,
        cfg: Config,
    ) -> int:
        """Each session of one worker against the worker's list; returns how many ended."""
        stuck_after = dt.timedelta(seconds=cfg.session_stuck_after_s)
        open_timeout = dt.timedelta(seconds=cfg.session_open_timeout_s)
        remote_by_key = {r.session_key: r for r in remote_sessions}
        seen: Seen = []
        ended = 0
        for session in sessions:
            remote = remote_by_key.get(session.session_key)
            ended += self._reconcile(session, remote, now, cfg, stuck_after, open_timeout, seen)
        _touch_many(seen, now)
        return ended

    def _reconcile(
        self,
        session: BrowserSession,
        remote: RemoteSession | None,
        now: dt.datetime,
        cfg: Config,
        stuck_after: dt.timedelta,
        open_timeout: dt.timedelta,
        seen: Seen | None = None,
    ) -> int:
        if remote is None:
            if session.opened_at and now - session.opened_at < DISAPPEAR_GRACE:
                return 0
            gone = (
                SessionStatus.DISCONNECTED,
                ErrorCode.SESSION_DISCONNECTED,
                "a sessão sumiu do worker",
                False,
            )
            return _end(session, remote, now, cfg, gone)
        ending = _ending(session, remote, now, stuck_after, open_timeout)
        if ending is not None:
            return _end(session, remote, now, cfg, ending)
        _observe(session, remote, now, seen)
        return 0


def _worker_offline(
    sessions: list[BrowserSession], worker: Worker, now: dt.datetime, cfg: Config
) -> int:
    """Worker offline: its sessions are gone. Replacements are the infrastructure's
    cost, not the missions'."""
    ended = 0
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
    return ended


def _end(
    session: BrowserSession,
    remote: RemoteSession | None,
    now: dt.datetime,
    cfg: Config,
    ending: Ending,
) -> int:
    status, code, message, holds = ending
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


def _ending(
    session: BrowserSession,
    remote: RemoteSession,
    now: dt.datetime,
    stuck_after: dt.timedelta,
    open_timeout: dt.timedelta,
) -> Ending | None:
    """How the session ends by what its worker says of it; None: it goes on."""
    if remote.status in ("failed", "disconnected", "closed"):
        detail = remote.error_message or remote.error_code or remote.status
        if remote.status == "disconnected":
            return (
                SessionStatus.DISCONNECTED,
                ErrorCode.SESSION_DISCONNECTED,
                f"worker: {detail}",
                False,
            )
        return SessionStatus.FAILED, ErrorCode.SESSION_FAILED, f"worker: {detail}", False
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
        message = f"sem atividade desde {last_activity:%H:%M:%S}" if last_activity else "travada"
        return SessionStatus.STUCK, ErrorCode.SESSION_STUCK, message, True
    if (
        session.status == SessionStatus.CREATING
        and remote.status == "creating"
        and session.opened_at
        and now - session.opened_at > open_timeout
    ):
        return SessionStatus.STUCK, ErrorCode.SESSION_OPEN_FAILED, "não ficou pronta", True
    return None


def _observe(
    session: BrowserSession, remote: RemoteSession, now: dt.datetime, seen: Seen | None
) -> None:
    """A session that goes on: ready once its worker has it so, else touched (phase,
    last activity), in `seen` when given (written with the others by `_touch_many`)."""
    updates: dict[str, object] = {"last_polled_at": now, "phase": remote.phase or ""}
    if remote.last_activity_at:
        updates["last_activity_at"] = remote.last_activity_at
    if session.status == SessionStatus.CREATING and remote.status in ("ready", "busy"):
        if _unchanged(session).update(status=SessionStatus.READY, **updates):
            events.publish("session.ready", mission_id=session.mission_id)
    elif not _news(session, remote, now):
        return
    elif seen is not None:
        seen.append((session, remote))
    else:
        _unchanged(session).update(**updates)


def _unchanged(session: BrowserSession) -> QuerySet[BrowserSession]:
    """The session's row while it still has the status it was read in (built only for a
    write: most polled sessions have nothing to write)."""
    return BrowserSession.objects.filter(pk=session.pk, status=session.status)


def _news(session: BrowserSession, remote: RemoteSession, now: dt.datetime) -> bool:
    """Whether the poll saw something to write of a session that goes on: another
    phase, newer activity, or a `last_polled_at` older than POLL_MARK_EVERY."""
    return (
        session.phase != (remote.phase or "")
        or bool(remote.last_activity_at and remote.last_activity_at != session.last_activity_at)
        or session.last_polled_at is None
        or now - session.last_polled_at >= POLL_MARK_EVERY
    )


def _touch_many(seen: Seen, now: dt.datetime) -> None:
    """What the poll saw of sessions that stay as they are (phase, last activity):
    one UPDATE for all, each row still conditional on the status it was read in."""
    if not seen:
        return
    with transaction.atomic():
        # Locked in id order first, like every batch that locks several sessions.
        still = leases.hold(
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
