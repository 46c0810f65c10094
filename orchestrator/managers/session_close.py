"""SessionManager, closing: the sessions given up on (closing, stuck, disconnected,
failed while holding a slot) are DELETEd on their workers, then their slots freed, fenced
by each lease."""

from __future__ import annotations

import datetime as dt
from functools import partial

from django.db import transaction

from orchestrator import events, leases, slots, worker_capacity
from orchestrator.clients import breaker
from orchestrator.clients.pool import call_all
from orchestrator.crashpoints import crashpoint
from orchestrator.managers.base import BaseManager, leases_q
from orchestrator.models import BrowserSession
from orchestrator.states import SessionStatus
from registry.config import Config
from registry.models import Worker


class SessionClosing(BaseManager):
    """Closes given-up sessions on their workers (`SessionManager.close_sessions`)."""

    def close_sessions(self, now: dt.datetime, cfg: Config) -> int:
        """DELETE the sessions we gave up on (closing, stuck, disconnected, failed while
        holding a slot) on their workers, then free their slots (`worker_capacity`)."""
        claimed = leases.claim(
            BrowserSession,
            worker_capacity.awaiting_close_q(now),
            owner=self.owner,
            lease_s=cfg.lease_s,
            limit=cfg.claim_batch_size * 2,
        )
        if not claimed:
            return 0
        tokens = {lease.id: lease for lease in claimed}
        sessions = list(
            BrowserSession.objects.filter(id__in=tokens).select_related("worker").order_by("id")
        )
        closing = self._delete_all(sessions, tokens, now, cfg)
        if not closing:
            return 0
        return self._record_closed(closing, tokens, now)

    def _delete_all(
        self,
        sessions: list[BrowserSession],
        tokens: dict[int, leases.Lease],
        now: dt.datetime,
        cfg: Config,
    ) -> list[BrowserSession]:
        """The DELETEs of the batch at once; the sessions closed (or closed by their
        worker itself) are returned, the others' leases dropped."""
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
                    leases.release(BrowserSession, lease, self.owner)
                    continue
            elif not worker_capacity.worker_closed_it_itself(session, now):
                leases.release(BrowserSession, lease, self.owner)
                continue
            closing.append(session)
        return closing

    def _record_closed(
        self,
        closing: list[BrowserSession],
        tokens: dict[int, leases.Lease],
        now: dt.datetime,
    ) -> int:
        with transaction.atomic():
            # One fenced write per final status; the rows that matched are the winners.
            won: list[BrowserSession] = []
            for final in {_final_status(s) for s in closing}:
                group = [s for s in closing if _final_status(s) == final]
                ids = leases.hold(
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
                    leases.stale(f"session {session.session_key}", "close", session.mission_id)
            slots.release_slots(won)
            for session in won:
                events.publish("capacity.freed", mission_id=session.mission_id)
        return len(won)

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


def _final_status(session: BrowserSession) -> str:
    return SessionStatus.CLOSED if session.status == SessionStatus.CLOSING else session.status
