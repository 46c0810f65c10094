"""WorkerManager, results: follows running jobs, pages their results and streams each
page to the mission's writer before saving the cursor (`classify_item_error` decides
each failed item)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.db.models import (
    Q,
)

from orchestrator import leases
from orchestrator.clients import breaker
from orchestrator.clients.base import ServiceError
from orchestrator.clients.pool import call_all
from orchestrator.clients.worker import ResultsPage, WorkerClient
from orchestrator.clients.writer import WriterClient
from orchestrator.crashpoints import crashpoint
from orchestrator.job_polling import JobPolls
from orchestrator.managers.base import (
    BaseManager,
    end_session,
    fail_attempt,
    release_many,
    writers_for,
)
from orchestrator.managers.pages import record_pages
from orchestrator.models import BrowserSession, Mission
from orchestrator.states import (
    ErrorCode,
    SessionStatus,
)
from registry import quality_rules
from registry.config import Config
from registry.models import Writer

JOB_STARTING, JOB_RUNNING = "starting", "running"
PAGES_PER_SESSION_PER_TICK = 20


@dataclass
class _Drain:
    """One claimed job whose results are being paged this tick."""

    session: BrowserSession
    lease: leases.Lease
    writer: Writer
    worker_client: WorkerClient
    writer_client: WriterClient


@dataclass
class _Step:
    """The external half of one page: what the worker and the writer answered."""

    page: ResultsPage | None = None
    fetch_error: ServiceError | None = None
    write_error: ServiceError | None = None
    sent: bool = False


class ResultDelivery(BaseManager):
    """Result paging and delivery (`WorkerManager.collect_results`)."""

    job_polls: JobPolls

    def collect_results(self, now: dt.datetime, cfg: Config) -> int:
        running = Q(job_status=JOB_RUNNING, status__in=[SessionStatus.READY, SessionStatus.BUSY])
        not_due = self.job_polls.not_due() if self.throttle else []
        if not_due:
            # The loop follows each running job at its own pace (`job_polling`).
            running &= ~Q(id__in=not_due)
        claimed = leases.claim(
            BrowserSession,
            running,
            owner=self.owner,
            lease_s=cfg.lease_s,
            limit=cfg.claim_batch_size * 5,
        )
        if not claimed:
            return 0
        tokens = {lease.id: lease for lease in claimed}
        sessions = list(
            BrowserSession.objects.filter(id__in=tokens)
            .select_related("worker", "mission", "proxy")
            .order_by("id")
        )
        writers = writers_for([s.mission for s in sessions])
        progressed: set[int] = set()
        try:
            pages = self._drain_jobs(sessions, tokens, writers, now, cfg, progressed)
        finally:
            # One statement for the whole batch (a finished job already dropped its lease).
            release_many(BrowserSession, claimed, self.owner)
        self.job_polls.polled(
            [(s.pk, s.worker_id, s.pk in progressed) for s in sessions],
            BrowserSession.objects.filter(id__in=tokens, job_status=JOB_RUNNING).values_list(
                "id", flat=True
            ),
            cfg.worker_tick_s,
        )
        return pages

    def _drain_jobs(
        self,
        sessions: list[BrowserSession],
        tokens: dict[int, leases.Lease],
        writers: dict[int, Writer | None],
        now: dt.datetime,
        cfg: Config,
        progressed: set[int],
    ) -> int:
        """Page the results of every claimed job to its writer, a round of pages at a
        time: the worker and writer calls of a round run concurrently (`call_all`, no
        database in them), then each page is recorded on this thread, in session order,
        fenced by its lease — exactly as when the calls were made one by one."""
        active: list[_Drain] = []
        for session in sessions:
            mission, writer = session.mission, writers[session.mission_id]
            if not breaker.allow_call(session.worker, now):
                continue
            if writer is None or not breaker.allow_call(writer, now):
                reason = (
                    "WRITER_NOT_CONFIGURED: nenhum writer configurado"
                    if writer is None
                    else f"WRITER_UNAVAILABLE: writer {writer.name} indisponível"
                )
                Mission.objects.filter(pk=mission.pk).exclude(wait_reason=reason).update(
                    wait_reason=reason
                )
                continue
            active.append(
                _Drain(
                    session,
                    tokens[session.pk],
                    writer,
                    self.worker_client(session.worker, cfg),
                    self.writer_client(writer, cfg),
                )
            )
        rules = quality_rules.rules_for_domains({d.session.mission.domain for d in active})
        pages = 0
        for _ in range(PAGES_PER_SESSION_PER_TICK):
            # A breaker opened by the previous round stops the calls of the next one.
            active = [
                d
                for d in active
                if breaker.allow_call(d.session.worker, now) and breaker.allow_call(d.writer, now)
            ]
            if not active:
                break
            outcomes = call_all([partial(self._fetch_and_send, d, cfg) for d in active])
            ready: list[tuple[_Drain, ResultsPage]] = []
            for drain, outcome in zip(active, outcomes, strict=True):
                step = outcome.value
                assert step is not None  # _fetch_and_send turns service errors into steps
                if self._record_step(drain, step, now, cfg):
                    assert step.page is not None
                    ready.append((drain, step.page))
            # Recorded as of the round's last answer, not the tick's start (#15 case 8).
            answered = max([now, *(o.at for o in outcomes if o.at is not None)])
            recorded = record_pages(
                [(d.session, d.lease, page) for d, page in ready], self.owner, rules, answered, cfg
            )
            going: list[_Drain] = []
            for drain, page in ready:
                if drain.session.pk not in recorded:
                    continue
                pages += 1
                if page.results:
                    progressed.add(drain.session.pk)
                if page.next_cursor is not None:
                    drain.session.job_cursor = page.next_cursor
                    drain.session.job_pages += 1
                    going.append(drain)
            active = going
        return pages

    def _fetch_and_send(self, drain: _Drain, cfg: Config) -> _Step:
        """The external half of one page (runs in the call pool: no database here):
        read the next page of results, send its successes to the writer."""
        session = drain.session
        try:
            page = drain.worker_client.job_results(
                session.job_remote_id,
                cursor=session.job_cursor or None,
                limit=cfg.results_page_size,
            )
        except ServiceError as exc:
            return _Step(fetch_error=exc)
        ok = [r for r in page.results if r.status == "ok"]
        if not ok:
            return _Step(page=page)
        records = [
            {
                "item_id": r.item_id,
                "url": r.url,
                "fetched_at": r.fetched_at.isoformat() if r.fetched_at else None,
                "http_status": r.http_status,
                "final_url": r.final_url,
                "data": r.data,
            }
            for r in ok
        ]
        # The key names the page by its position and size: a page re-read after a
        # crash is the same batch; one that grew meanwhile is a new batch whose old
        # records the writer counts as duplicates.
        base_key = f"{session.job_key}-p{session.job_pages}-n{len(page.results)}"
        chunk = max(1, drain.writer.max_batch_records)
        mission = session.mission
        meta = {
            "id": mission.pk,
            "name": mission.name,
            "domain": mission.domain,
            "run_id": mission.etl_run_id or None,
        }
        try:
            for offset in range(0, len(records), chunk):
                part = records[offset : offset + chunk]
                key = base_key if len(records) <= chunk else f"{base_key}-b{offset // chunk}"
                self._write(drain.writer_client, key, meta, part)
        except ServiceError as exc:
            return _Step(page=page, write_error=exc)
        return _Step(page=page, sent=True)

    def _record_step(self, drain: _Drain, step: _Step, now: dt.datetime, cfg: Config) -> bool:
        """The outcome of one page's calls (the tick's thread): breakers and errors.
        True when the page is to be recorded (`pages.record_pages`)."""
        session, writer = drain.session, drain.writer
        mission = session.mission
        if step.fetch_error is not None:
            exc = step.fetch_error
            if exc.code == "job_not_found":
                end_session(
                    session,
                    expected_status=session.status,
                    status=SessionStatus.FAILED,
                    code=ErrorCode.SCRAPE_JOB_FAILED,
                    message="o worker não conhece mais o job",
                    now=now,
                    cfg=cfg,
                )
            else:
                self.service_failed(session.worker, exc, now, cfg)
            return False
        page = step.page
        assert page is not None
        if not page.results and page.next_cursor is not None:
            return False
        if step.write_error is not None:
            exc = step.write_error
            if exc.infrastructure:
                self.service_failed(writer, exc, now, cfg)
                Mission.objects.filter(pk=mission.pk).update(
                    wait_reason=f"WRITER_UNAVAILABLE: {exc.code}"[:500]
                )
                return False
            mission.refresh_from_db()
            fail_attempt(
                mission,
                ErrorCode.WRITER_REJECTED,
                f"{exc.code}: {exc.message}",
                now,
                cfg,
                self.rng,
            )
            return False
        if step.sent:
            breaker.record_success(writer, now)
            if mission.wait_reason.startswith("WRITER_"):
                Mission.objects.filter(pk=mission.pk).update(wait_reason="")
                mission.wait_reason = ""
            crashpoint("after_writer_batch")
        return True

    def _write(
        self, client: Any, key: str, meta: dict[str, Any], records: list[dict[str, Any]]
    ) -> None:
        try:
            client.write_batch(key, meta, records)
        except ServiceError as exc:
            if exc.code != "batch_too_large" or len(records) < 2:
                raise
            half = len(records) // 2
            self._write(client, f"{key}-h0", meta, records[:half])
            self._write(client, f"{key}-h1", meta, records[half:])
