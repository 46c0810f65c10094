"""WorkerManager, starting jobs: each ready session's job is POSTed to its worker (the
calls of a batch at once, no lock held), then every started job is recorded at once,
fenced by lease and job key; a refused job ends the session or fails the attempt."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import CharField, F

from orchestrator import leases, pgbatch
from orchestrator.clients import breaker
from orchestrator.clients.base import ServiceError
from orchestrator.clients.pool import call_all
from orchestrator.crashpoints import crashpoint
from orchestrator.managers.base import BaseManager, Move, end_session, fail_attempt, transition_many
from orchestrator.managers.results import JOB_RUNNING
from orchestrator.models import BrowserSession, Mission, MissionEvent, MissionItem
from orchestrator.states import ErrorCode, ItemStatus, MissionStatus, SessionStatus
from registry import site_rules
from registry.config import Config
from registry.models import SiteConfig

# A session and its job's items (id, url).
JobCall = tuple[BrowserSession, list[tuple[int, str]]]
# A started job: its session, the worker's job id, how many items, when it answered.
Started = tuple[BrowserSession, str, int, dt.datetime]


class JobStart(BaseManager):
    """Starts the jobs `JobDispatch` assigned, on their workers."""

    def _start_jobs(
        self,
        sessions: list[BrowserSession],
        tokens: dict[int, leases.Lease],
        sites: dict[str, SiteConfig],
        now: dt.datetime,
        cfg: Config,
    ) -> int:
        """POST each session's job to its worker, then record every started job at once
        (fenced by lease and job key: a stale lease writes nothing)."""
        if not sessions:
            return 0
        calls = self._job_calls(sessions, tokens, now)
        started = self._post_jobs(calls, tokens, sites, now, cfg)
        if not started:
            return 0
        return self._record_started(started, tokens)

    def _job_calls(
        self,
        sessions: list[BrowserSession],
        tokens: dict[int, leases.Lease],
        now: dt.datetime,
    ) -> list[JobCall]:
        """The jobs to POST, with their items; a session whose job has no item left
        drops it, one whose worker may not be called now keeps it for a later tick."""
        items: dict[tuple[int, str], list[tuple[int, str]]] = defaultdict(list)
        for session_id, job_key, item_id, url in pgbatch.raw_rows(
            MissionItem.objects.filter(
                session_id__in=[s.pk for s in sessions], status=ItemStatus.ASSIGNED
            )
            .order_by("id")
            .values_list("session_id", "job_key", "id", "url")
        ):
            items[(session_id, job_key)].append((item_id, url))
        calls: list[JobCall] = []
        for session in sessions:
            lease = tokens[session.pk]
            job_items = items.get((session.pk, session.job_key))
            if not job_items:
                leases.release(
                    BrowserSession, lease, self.owner, job_key="", job_status="", job_remote_id=""
                )
                continue
            if not breaker.allow_call(session.worker, now):
                leases.release(BrowserSession, lease, self.owner)
                continue
            calls.append((session, job_items))
        return calls

    def _post_jobs(
        self,
        calls: list[JobCall],
        tokens: dict[int, leases.Lease],
        sites: dict[str, SiteConfig],
        now: dt.datetime,
        cfg: Config,
    ) -> list[Started]:
        """The POSTs of the batch at once (no database in them), then their outcomes."""
        outcomes = call_all(
            [
                partial(
                    self.worker_client(session.worker, cfg).start_job,
                    session.remote_id,
                    session.job_key,
                    [(str(i), u) for i, u in job_items],
                    timeout_s=sites[session.mission.domain].job_timeout_s,
                    selectors=sites[session.mission.domain].selectors or None,
                    options=site_rules.job_options(sites[session.mission.domain]),
                )
                for session, job_items in calls
            ]
        )
        started: list[Started] = []
        for (session, job_items), outcome in zip(calls, outcomes, strict=True):
            if outcome.error is not None:
                self._job_failed(
                    session.mission, session, tokens[session.pk], outcome.error, now, cfg
                )
                continue
            job = outcome.value
            assert job is not None
            crashpoint("after_job_start")
            breaker.record_success(session.worker, now)
            started.append((session, job.id, len(job_items), max(now, outcome.at or now)))
        return started

    def _record_started(self, started: list[Started], tokens: dict[int, leases.Lease]) -> int:
        """The started jobs whose sessions are still ours go busy, in one transaction;
        their missions' first jobs move them to EXTRAINDO."""
        # The job started when its worker answered, not when this tick began (#15 case 8).
        answered = max(at for _, _, _, at in started)
        with transaction.atomic():
            fence = pgbatch.rows_in(
                BrowserSession,
                ["pk", "lease_token", "job_key"],
                [(s.pk, tokens[s.pk].token, s.job_key) for s, _, _, _ in started],
            )
            won = leases.hold(
                BrowserSession.objects.filter(
                    fence, locked_by=self.owner, status=SessionStatus.READY
                )
            )
            recorded = [entry for entry in started if entry[0].pk in won]
            for session, _, _, _ in started:
                if session.pk not in won:
                    leases.stale(
                        f"session {session.session_key}",
                        f"job {session.job_key}",
                        session.mission_id,
                    )
            if not recorded:
                return 0
            BrowserSession.objects.filter(pk__in=won).update(
                status=SessionStatus.BUSY,
                job_remote_id=pgbatch.by_pk(
                    BrowserSession, {s.pk: job_id for s, job_id, _, _ in recorded}, CharField()
                ),
                job_status=JOB_RUNNING,
                last_activity_at=answered,
                locked_by="",
                locked_until=None,
            )
            first: dict[int, Move] = {}
            for session, _, _, _ in recorded:
                mission = session.mission
                if mission.status == MissionStatus.ATRIBUIDO and mission.pk not in first:
                    first[mission.pk] = Move(mission, "Primeiro job iniciado")
            transition_many(list(first.values()), MissionStatus.EXTRAINDO, now=answered)
            pgbatch.insert(MissionEvent, [_job_event(*entry) for entry in recorded])
        return len(recorded)

    def _job_failed(
        self,
        mission: Mission,
        session: BrowserSession,
        lease: leases.Lease,
        exc: ServiceError,
        now: dt.datetime,
        cfg: Config,
    ) -> int:
        if exc.infrastructure:
            # Same job_key next time: the worker's idempotency makes the retry safe.
            self.service_failed(session.worker, exc, now, cfg)
            leases.release(BrowserSession, lease, self.owner)
            return 0
        if exc.code in ("session_not_found", "session_not_ready", "session_busy"):
            remote_code, why = self._why_refused(session, exc, cfg)
            end_session(
                session,
                expected_status=SessionStatus.READY,
                status=SessionStatus.FAILED if exc.code != "session_busy" else SessionStatus.STUCK,
                code=ErrorCode.SESSION_FAILED,
                message=f"job recusado: {why}",
                now=now,
                cfg=cfg,
                remote_holds_slot=exc.code == "session_busy",
                remote_code=remote_code,
            )
            return 0
        # 422 or another permanent refusal of the job itself: this attempt failed.
        self._give_back_job(session, lease, now)
        mission.refresh_from_db()
        fail_attempt(
            mission,
            ErrorCode.SCRAPE_JOB_REJECTED,
            f"{exc.code}: {exc.message}",
            now,
            cfg,
            self.rng,
        )
        return 0

    def _why_refused(
        self, session: BrowserSession, exc: ServiceError, cfg: Config
    ) -> tuple[str, str]:
        """(remote code, message) of a session that refused its job as not ready: the
        worker's own error of the session when it has one (a proxy that failed it is the
        proxy's fault, not the site's: issue #15, case 3), else the refusal's code."""
        if exc.code == "session_not_ready" and session.remote_id:
            try:
                remote = self.worker_client(session.worker, cfg).get_session(session.remote_id)
            except ServiceError:
                remote = None
            if remote is not None and remote.error_code:
                return remote.error_code, f"{exc.code} ({remote.error_code})"
        return exc.code, exc.code

    def _give_back_job(
        self, session: BrowserSession, lease: leases.Lease, now: dt.datetime
    ) -> None:
        with transaction.atomic():
            MissionItem.objects.filter(
                session=session, job_key=session.job_key, status=ItemStatus.ASSIGNED
            ).update(
                status=ItemStatus.PENDING, session=None, job_key="", attempts=F("attempts") - 1
            )
            leases.release(
                BrowserSession, lease, self.owner, job_key="", job_status="", job_remote_id=""
            )


def _job_event(session: BrowserSession, job_id: str, n: int, at: dt.datetime) -> dict[str, Any]:
    """The MissionEvent row (`pgbatch.insert`) of a job the worker started."""
    return {
        "mission_id": session.mission_id,
        "kind": MissionEvent.Kind.JOB.value,
        "attempt": session.attempt,
        "message": f"Job {session.job_key} iniciado com {n} {'item' if n == 1 else 'itens'}",
        "data": {"job_key": session.job_key, "job_id": job_id, "items": n},
        "created_at": at,
    }
