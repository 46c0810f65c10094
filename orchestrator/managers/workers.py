"""WorkerManager (every 10 s): health and capacity of every worker and writer; hands
ready sessions their next job (items chosen by the distributor); follows jobs, pages
their results and streams each page to the mission's writer before saving the cursor."""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

from django.db import connection, transaction
from django.db.models import (
    Case,
    CharField,
    F,
    FloatField,
    IntegerField,
    Q,
    Value,
    When,
    Window,
)
from django.db.models.functions import Greatest, RowNumber

from orchestrator import allocation, events, pgbatch, proxy_health, quality
from orchestrator.clients import breaker
from orchestrator.clients.base import ServiceError
from orchestrator.clients.pool import call_all
from orchestrator.clients.worker import Result, ResultsPage, WorkerClient
from orchestrator.clients.writer import WriterClient
from orchestrator.crashpoints import crashpoint
from orchestrator.distributor import ItemInfo, SessionInfo, SiteRule, items_to_sessions
from orchestrator.managers.base import (
    BaseManager,
    Move,
    TickResult,
    end_session,
    fail_attempt,
    leases_q,
    logger,
    release_many,
    site_configs,
    transition_many,
    update_in_id_order,
    writers_for,
)
from orchestrator.models import BrowserSession, Mission, MissionEvent, MissionItem
from orchestrator.states import (
    ErrorCode,
    ItemStatus,
    MissionStatus,
    SessionStatus,
    classify_item_error,
)
from registry.config import Config
from registry.models import HealthStatus, Proxy, SiteConfig, Worker, Writer

JOB_STARTING, JOB_RUNNING = "starting", "running"
PAGES_PER_SESSION_PER_TICK = 20


class _HealthAnswer(Protocol):
    @property
    def status(self) -> str: ...


H = TypeVar("H", bound=_HealthAnswer)


@dataclass
class _Drain:
    """One claimed job whose results are being paged this tick."""

    session: BrowserSession
    lease: allocation.Lease
    writer: Writer
    worker_client: WorkerClient
    writer_client: WriterClient


@dataclass
class _Saved:
    """A page being recorded: its session (fenced, locked), results by item id, and
    what recording it counted."""

    session: BrowserSession
    page: ResultsPage
    by_id: dict[int, Result]
    assigned: list[int] = field(default_factory=list)
    done: int = 0
    failed: int = 0
    retried: int = 0
    proxy_failures: int = 0


@dataclass
class _Step:
    """The external half of one page: what the worker and the writer answered."""

    page: ResultsPage | None = None
    fetch_error: ServiceError | None = None
    write_error: ServiceError | None = None
    sent: bool = False


class WorkerManager(BaseManager):
    name = "workers"

    def tick(self) -> TickResult:
        now, cfg = self.load()
        result = TickResult()
        if self.periodic("health", cfg.worker_tick_s):
            result.add("checked", self.check_health(now, cfg))
        if not cfg.paused:
            result.add("jobs_started", self.dispatch_jobs(now, cfg))
        result.add("pages", self.collect_results(now, cfg))
        return result

    # ------------------------------------------------------------------ health

    def check_health(self, now: dt.datetime, cfg: Config) -> int:
        """GET /health of every enabled worker and writer (probes when a breaker is open)."""
        checked = 0
        for worker in Worker.objects.filter(enabled=True):
            health = self._probe(worker, self.worker_client(worker, cfg).health, now, cfg)
            if health is not None:
                Worker.objects.filter(pk=worker.pk).update(
                    reported_active_sessions=health.active_sessions,
                    reported_max_sessions=health.max_sessions,
                    version=(health.version or "")[:50],
                )
                checked += 1
        for writer in Writer.objects.filter(enabled=True):
            if self._probe(writer, self.writer_client(writer, cfg).health, now, cfg) is not None:
                checked += 1
        return checked

    def _probe(
        self, service: Worker | Writer, call: Callable[[], H], now: dt.datetime, cfg: Config
    ) -> H | None:
        """One /health call unless the service's breaker says wait; its answer (or
        failure) recorded. Returns the answer, None when skipped or failed."""
        if not breaker.allow_call(service, now):
            return None
        started = time.monotonic()
        try:
            health = call()
        except ServiceError as exc:
            self.service_failed(service, exc, now, cfg)
            return None
        latency = int((time.monotonic() - started) * 1000)
        status = HealthStatus.DEGRADED if health.status == "degraded" else HealthStatus.OK
        self._health_answered(service, now, latency, status)
        return health

    @staticmethod
    def _health_answered(
        service: Worker | Writer, now: dt.datetime, latency_ms: int, status: str
    ) -> None:
        """/health answered. That closes the breaker only when real calls have not been
        failing: a service whose /health is fine while its real endpoints fail must not
        have its failure count reset every tick (its breaker would never open)."""
        if service.consecutive_failures == 0 and service.circuit_open_until is None:
            breaker.record_success(service, now, latency_ms=latency_ms, health_status=status)
            return
        # Let the next real call through as the probe; its outcome decides.
        type(service)._default_manager.filter(pk=service.pk).update(
            health_status=HealthStatus.DEGRADED,
            last_seen_at=now,
            last_checked_at=now,
            last_latency_ms=latency_ms,
        )

    # ------------------------------------------------------------------ jobs

    def dispatch_jobs(self, now: dt.datetime, cfg: Config) -> int:
        """Hand ready sessions their next job. Every step is batched over the claimed
        sessions (a few statements per tick, not per session); only the worker calls go
        one by one, each with its idempotency key (`job_key`) and no lock held."""
        leases = allocation.claim(
            BrowserSession,
            Q(
                status=SessionStatus.READY,
                holds_slot=True,
                attempt=F("mission__attempt"),
                mission__status__in=[MissionStatus.ATRIBUIDO, MissionStatus.EXTRAINDO],
            )
            & (Q(job_key="") | Q(job_status=JOB_STARTING)),
            owner=self.owner,
            lease_s=cfg.lease_s,
            limit=cfg.claim_batch_size * 5,
        )
        if not leases:
            return 0
        tokens = {lease.id: lease for lease in leases}
        sessions = list(
            BrowserSession.objects.filter(id__in=tokens)
            .select_related("worker", "mission")
            .order_by("id")
        )
        sites = site_configs({s.mission.domain for s in sessions})
        fresh = [s for s in sessions if not s.job_key]
        if fresh:
            self._assign_items(fresh, sites, tokens, now)
        # Ended or rotated meanwhile (another process bumped the token): leave it.
        current = {
            pk: (token, locked_by, job_key, job_status)
            for pk, token, locked_by, job_key, job_status in BrowserSession.objects.filter(
                id__in=tokens
            ).values_list("id", "lease_token", "locked_by", "job_key", "job_status")
        }
        starting: list[BrowserSession] = []
        idle: list[allocation.Lease] = []
        for session in sessions:
            lease = tokens[session.pk]
            token, locked_by, job_key, job_status = current.get(session.pk, (None, "", "", ""))
            if token != lease.token or locked_by != self.owner:
                continue
            session.job_key, session.job_status = job_key, job_status
            if job_status == JOB_STARTING:
                starting.append(session)
            else:
                idle.append(lease)
        release_many(BrowserSession, idle, self.owner)
        return self._start_jobs(starting, tokens, sites, now, cfg)

    def _assign_items(
        self,
        sessions: list[BrowserSession],
        sites: dict[str, SiteConfig],
        tokens: dict[int, allocation.Lease],
        now: dt.datetime,
    ) -> None:
        """Choose each fresh session's items with the distributor and give it a job key:
        one read of the pending items of every mission, one write of the sessions and
        one of the items."""
        by_mission: dict[int, list[BrowserSession]] = defaultdict(list)
        for session in sessions:
            by_mission[session.mission_id].append(session)
        wants = {
            mission_id: sites[group[0].mission.domain].items_per_job * len(group) * 4
            for mission_id, group in by_mission.items()
        }
        rank = Window(RowNumber(), partition_by=[F("mission_id")], order_by=F("id").asc())
        pending: dict[int, list[tuple[int, str, list[str]]]] = defaultdict(list)
        for mission_id, item_id, url, failed, n in (
            MissionItem.objects.filter(mission_id__in=list(by_mission), status=ItemStatus.PENDING)
            .annotate(n=rank)
            .filter(n__lte=max(wants.values()))
            .values_list("mission_id", "id", "url", "failed_proxies", "n")
        ):
            if n <= wants[mission_id]:
                pending[mission_id].append((item_id, url, failed))
        chosen: dict[int, list[int]] = {}
        drained: list[allocation.Lease] = []
        for mission_id, group in by_mission.items():
            items = sorted(pending.get(mission_id, []))
            if not items:
                # Nothing left to hand out: idle sessions free their slots early.
                drained.extend(tokens[s.pk] for s in group)
                continue
            site = sites[group[0].mission.domain]
            for session_id, picked in self._distribute(group, items, site).items():
                if picked:
                    chosen[session_id] = picked
        if drained:
            update_in_id_order(
                BrowserSession.objects.filter(
                    leases_q(drained),
                    locked_by=self.owner,
                    status=SessionStatus.READY,
                    job_key="",
                ),
                status=SessionStatus.CLOSING,
                locked_by="",
                locked_until=None,
            )
            events.publish("session.closing")
        if not chosen:
            return
        with transaction.atomic():
            # Lock the sessions still ours and jobless; their job_seq names the new job.
            seqs = dict(
                BrowserSession.objects.filter(
                    leases_q([tokens[pk] for pk in chosen]),
                    locked_by=self.owner,
                    status=SessionStatus.READY,
                    job_key="",
                )
                .order_by("id")
                .select_for_update(of=("self",))
                .values_list("id", "job_seq")
            )
            if not seqs:
                return
            keys = {s.pk: f"{s.session_key}-j{seqs[s.pk] + 1}" for s in sessions if s.pk in seqs}
            BrowserSession.objects.filter(pk__in=list(seqs)).update(
                job_seq=F("job_seq") + 1,
                job_key=Case(*(When(pk=pk, then=Value(key)) for pk, key in keys.items())),
                job_status=JOB_STARTING,
                job_cursor="",
                job_pages=0,
                job_remote_id="",
                job_started_at=now,
            )
            _assign({pk: chosen[pk] for pk in seqs}, keys)

    @staticmethod
    def _distribute(
        sessions: list[BrowserSession],
        pending: list[tuple[int, str, list[str]]],
        site: SiteConfig,
    ) -> dict[int, list[int]]:
        """The distributor's choice of item ids per session of one mission."""
        per_job = site.items_per_job
        infos = [
            SessionInfo(
                id=s.pk,
                proxy_id=s.proxy_external_id or None,
                proxy_type=s.proxy_type or None,
                proxy_geo=s.proxy_country or None,
                capacity=per_job,
            )
            for s in sessions
        ]
        rules = [SiteRule.from_site_config(site)]
        items = [
            ItemInfo(id=i, url=u, excluded_proxies=frozenset(fp or ())) for i, u, fp in pending
        ]
        distribution = items_to_sessions(items, infos, rules)
        by_session = distribution.by_session()
        retry_anyway = [
            u.item
            for u in distribution.unassigned
            if u.reason.value == "all_fitting_proxies_blocked"
        ]
        if retry_anyway:
            # Every live proxy already failed these items. Better another try on one of
            # them (the attempt budget still bounds it) than items stuck pending.
            left = [
                SessionInfo(
                    id=info.id,
                    proxy_id=info.proxy_id,
                    proxy_type=info.proxy_type,
                    proxy_geo=info.proxy_geo,
                    capacity=per_job - len(by_session.get(info.id, [])),
                )
                for info in infos
            ]
            second = items_to_sessions(
                [ItemInfo(id=i.id, url=i.url) for i in retry_anyway], left, rules
            ).by_session()
            for session_id, extra in second.items():
                by_session.setdefault(session_id, []).extend(extra)
        return {pk: [i.id for i in chosen] for pk, chosen in by_session.items()}

    def _start_jobs(
        self,
        sessions: list[BrowserSession],
        tokens: dict[int, allocation.Lease],
        sites: dict[str, SiteConfig],
        now: dt.datetime,
        cfg: Config,
    ) -> int:
        """POST each session's job to its worker, then record every started job at once
        (fenced by lease and job key: a stale lease writes nothing)."""
        if not sessions:
            return 0
        items: dict[tuple[int, str], list[tuple[int, str]]] = defaultdict(list)
        for session_id, job_key, item_id, url in (
            MissionItem.objects.filter(
                session_id__in=[s.pk for s in sessions], status=ItemStatus.ASSIGNED
            )
            .order_by("id")
            .values_list("session_id", "job_key", "id", "url")
        ):
            items[(session_id, job_key)].append((item_id, url))
        started: list[tuple[BrowserSession, str, int]] = []
        calls: list[tuple[BrowserSession, list[tuple[int, str]]]] = []
        for session in sessions:
            lease = tokens[session.pk]
            job_items = items.get((session.pk, session.job_key))
            if not job_items:
                allocation.release(
                    BrowserSession, lease, self.owner, job_key="", job_status="", job_remote_id=""
                )
                continue
            if not breaker.allow_call(session.worker, now):
                allocation.release(BrowserSession, lease, self.owner)
                continue
            calls.append((session, job_items))
        # The POSTs of the batch at once (no database in them), then their outcomes here.
        outcomes = call_all(
            [
                partial(
                    self.worker_client(session.worker, cfg).start_job,
                    session.remote_id,
                    session.job_key,
                    [(str(i), u) for i, u in job_items],
                    timeout_s=sites[session.mission.domain].job_timeout_s,
                )
                for session, job_items in calls
            ]
        )
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
            started.append((session, job.id, len(job_items)))
        if not started:
            return 0
        with transaction.atomic():
            fence = pgbatch.rows_in(
                BrowserSession,
                ["pk", "lease_token", "job_key"],
                [(s.pk, tokens[s.pk].token, s.job_key) for s, _, _ in started],
            )
            won = set(
                BrowserSession.objects.filter(
                    fence, locked_by=self.owner, status=SessionStatus.READY
                )
                .order_by("id")
                .select_for_update(of=("self",))
                .values_list("id", flat=True)
            )
            recorded = [entry for entry in started if entry[0].pk in won]
            for session, _, _ in started:
                if session.pk not in won:
                    logger.warning(
                        "STALE_LEASE session %s: job %s not recorded",
                        session.session_key,
                        session.job_key,
                        extra={"mission_id": session.mission_id},
                    )
            if not recorded:
                return 0
            BrowserSession.objects.filter(pk__in=won).update(
                status=SessionStatus.BUSY,
                job_remote_id=Case(
                    *(When(pk=s.pk, then=Value(job_id)) for s, job_id, _ in recorded)
                ),
                job_status=JOB_RUNNING,
                last_activity_at=now,
                locked_by="",
                locked_until=None,
            )
            first: dict[int, Move] = {}
            for session, _, _ in recorded:
                mission = session.mission
                if mission.status == MissionStatus.ATRIBUIDO and mission.pk not in first:
                    first[mission.pk] = Move(mission, "Primeiro job iniciado")
            transition_many(list(first.values()), MissionStatus.EXTRAINDO, now=now)
            MissionEvent.objects.bulk_create(
                MissionEvent(
                    mission_id=session.mission_id,
                    kind=MissionEvent.Kind.JOB,
                    attempt=session.attempt,
                    message=f"Job {session.job_key} iniciado com {n} {'item' if n == 1 else 'itens'}",
                    data={"job_key": session.job_key, "job_id": job_id, "items": n},
                    created_at=now,
                )
                for session, job_id, n in recorded
            )
        return len(recorded)

    def _job_failed(
        self,
        mission: Mission,
        session: BrowserSession,
        lease: allocation.Lease,
        exc: ServiceError,
        now: dt.datetime,
        cfg: Config,
    ) -> int:
        if exc.infrastructure:
            # Same job_key next time: the worker's idempotency makes the retry safe.
            self.service_failed(session.worker, exc, now, cfg)
            allocation.release(BrowserSession, lease, self.owner)
            return 0
        if exc.code in ("session_not_found", "session_not_ready", "session_busy"):
            end_session(
                session,
                expected_status=SessionStatus.READY,
                status=SessionStatus.FAILED if exc.code != "session_busy" else SessionStatus.STUCK,
                code=ErrorCode.SESSION_FAILED,
                message=f"job recusado: {exc.code}",
                now=now,
                cfg=cfg,
                remote_holds_slot=exc.code == "session_busy",
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

    def _give_back_job(
        self, session: BrowserSession, lease: allocation.Lease, now: dt.datetime
    ) -> None:
        with transaction.atomic():
            MissionItem.objects.filter(
                session=session, job_key=session.job_key, status=ItemStatus.ASSIGNED
            ).update(
                status=ItemStatus.PENDING, session=None, job_key="", attempts=F("attempts") - 1
            )
            allocation.release(
                BrowserSession, lease, self.owner, job_key="", job_status="", job_remote_id=""
            )

    # ------------------------------------------------------------------ results

    def collect_results(self, now: dt.datetime, cfg: Config) -> int:
        leases = allocation.claim(
            BrowserSession,
            Q(job_status=JOB_RUNNING, status__in=[SessionStatus.READY, SessionStatus.BUSY]),
            owner=self.owner,
            lease_s=cfg.lease_s,
            limit=cfg.claim_batch_size * 5,
        )
        if not leases:
            return 0
        tokens = {lease.id: lease for lease in leases}
        sessions = list(
            BrowserSession.objects.filter(id__in=tokens)
            .select_related("worker", "mission", "proxy")
            .order_by("id")
        )
        writers = writers_for([s.mission for s in sessions])
        try:
            return self._drain_jobs(sessions, tokens, writers, now, cfg)
        finally:
            # One statement for the whole batch (a finished job already dropped its lease).
            release_many(BrowserSession, leases, self.owner)

    def _drain_jobs(
        self,
        sessions: list[BrowserSession],
        tokens: dict[int, allocation.Lease],
        writers: dict[int, Writer | None],
        now: dt.datetime,
        cfg: Config,
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
        rules = quality.rules_for_domains({d.session.mission.domain for d in active})
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
            recorded = self._save_pages(ready, rules, now, cfg)
            going: list[_Drain] = []
            for drain, page in ready:
                if drain.session.pk not in recorded:
                    continue
                pages += 1
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
        True when the page is to be recorded (`_save_pages`)."""
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

    def _save_pages(
        self,
        pages: list[tuple[_Drain, ResultsPage]],
        rules: dict[str, quality.Rules],
        now: dt.datetime,
        cfg: Config,
    ) -> set[int]:
        """Record a round's delivered pages — items, counters, cursors — in one
        transaction and a few statements for all of them, each page fenced by its
        session's lease and job key (a stale one writes nothing and is logged).
        Returns the ids of the sessions whose page was recorded."""
        if not pages:
            return set()
        with transaction.atomic():
            cond = pgbatch.rows_in(
                BrowserSession,
                ["pk", "lease_token", "job_key"],
                [(d.lease.id, d.lease.token, d.session.job_key) for d, _ in pages],
            )
            live = set(
                BrowserSession.objects.filter(cond, locked_by=self.owner)
                .order_by("id")
                .select_for_update(of=("self",))
                .values_list("id", flat=True)
            )
            saved: list[_Saved] = []
            for drain, page in pages:
                if drain.session.pk not in live:
                    logger.warning(
                        "STALE_LEASE session %s: page not recorded",
                        drain.session.session_key,
                        extra={"mission_id": drain.session.mission_id},
                    )
                    continue
                by_id: dict[int, Result] = {}
                for r in page.results:
                    try:
                        by_id[int(r.item_id)] = r
                    except (TypeError, ValueError):
                        continue
                saved.append(_Saved(drain.session, page, by_id))
            if not saved:
                return set()
            # Ids only: a page of successes never needs the item rows themselves. The
            # session rows are locked: nothing else moves their job's items meanwhile.
            mine = pgbatch.rows_in(
                MissionItem,
                ["pk", "job_key"],
                [(i, p.session.job_key) for p in saved for i in p.by_id],
            )
            assigned = set(
                MissionItem.objects.filter(mine, status=ItemStatus.ASSIGNED).values_list(
                    "id", flat=True
                )
            )
            done: dict[int | None, list[int]] = defaultdict(list)
            not_ok: dict[int, _Saved] = {}
            for page_of in saved:
                page_of.assigned = [i for i in page_of.by_id if i in assigned]
                for item_id in page_of.assigned:
                    r = page_of.by_id[item_id]
                    if r.status == "ok":
                        done[r.http_status].append(item_id)
                        page_of.done += 1
                    else:
                        not_ok[item_id] = page_of
            to_update: list[MissionItem] = []
            not_ok_items = MissionItem.objects.filter(pgbatch.ids_in(MissionItem, list(not_ok)))
            for item in not_ok_items if not_ok else ():
                page_of = not_ok[item.pk]
                session = page_of.session
                r = page_of.by_id[item.pk]
                outcome = classify_item_error(
                    r.error_code, r.http_status, item.attempts, cfg.max_item_attempts
                )
                item.error_code = outcome.code.value
                item.error_message = (r.error_message or r.error_code or "")[:2000]
                item.http_status = r.http_status
                if outcome.code.value in ("SCRAPE_BLOCKED", "SCRAPE_PROXY_ERROR"):
                    page_of.proxy_failures += 1
                    if session.proxy_external_id and (
                        session.proxy_external_id not in item.failed_proxies
                    ):
                        item.failed_proxies = [*item.failed_proxies, session.proxy_external_id]
                if outcome.retry:
                    item.status = ItemStatus.PENDING
                    item.session = None
                    item.job_key = ""
                    page_of.retried += 1
                else:
                    item.status = ItemStatus.FAILED
                    item.finished_at = now
                    page_of.failed += 1
                to_update.append(item)
            for http_status, ids in done.items():
                MissionItem.objects.filter(
                    pgbatch.ids_in(MissionItem, ids), status=ItemStatus.ASSIGNED
                ).update(
                    status=ItemStatus.DONE,
                    finished_at=now,
                    http_status=http_status,
                    error_code="",
                    error_message="",
                )
            if to_update:
                pgbatch.bulk_update(
                    MissionItem,
                    to_update,
                    [
                        "status",
                        "session",
                        "job_key",
                        "error_code",
                        "error_message",
                        "http_status",
                        "finished_at",
                        "failed_proxies",
                    ],
                )
            self._add_counts(saved, now)
            proxy_health.record_many(
                [(p.session, p.session.mission.domain, p.page.results) for p in saved], now, cfg
            )
            for page_of in saved:
                session = page_of.session
                quality.tally_page(
                    session.mission,
                    [page_of.by_id[i] for i in page_of.assigned],
                    rules.get(session.mission.domain),
                )
            finished = [p for p in saved if p.page.next_cursor is None]
            if finished:
                # Jobs over: whatever they did not report goes back to pending.
                over = pgbatch.rows_in(
                    MissionItem,
                    ["session", "job_key"],
                    [(p.session.pk, p.session.job_key) for p in finished],
                )
                MissionItem.objects.filter(over, status=ItemStatus.ASSIGNED).update(
                    status=ItemStatus.PENDING, session=None, job_key=""
                )
            self._update_sessions(saved, now)
            for page_of in finished:
                events.publish("job.finished", mission_id=page_of.session.mission_id)
            for page_of in saved:
                if page_of.retried:
                    events.publish("items.pending", mission_id=page_of.session.mission_id)
        return {p.session.pk for p in saved}

    @staticmethod
    def _add_counts(saved: list[_Saved], now: dt.datetime) -> None:
        """Mission and proxy counters of the recorded pages: one UPDATE each, the rows
        locked first in id order (as everywhere else that locks several of them)."""
        per_mission: dict[int, tuple[int, int]] = {}
        per_proxy: dict[int, tuple[int, int]] = {}
        for p in saved:
            session = p.session
            if p.done or p.failed:
                d, f = per_mission.get(session.mission_id, (0, 0))
                per_mission[session.mission_id] = (d + p.done, f + p.failed)
            if session.proxy_id and (p.done or p.proxy_failures):
                d, f = per_proxy.get(session.proxy_id, (0, 0))
                per_proxy[session.proxy_id] = (d + p.done, f + p.proxy_failures)
        if per_mission:
            if len(per_mission) > 1:
                list(
                    Mission.objects.filter(pk__in=list(per_mission))
                    .order_by("id")
                    .select_for_update(of=("self",))
                    .values_list("id")
                )
            done_n = _by_pk({pk: d for pk, (d, _) in per_mission.items()})
            failed_n = _by_pk({pk: f for pk, (_, f) in per_mission.items()})
            Mission.objects.filter(pk__in=list(per_mission)).update(
                done_items=F("done_items") + done_n,
                failed_items=F("failed_items") + failed_n,
                records_delivered=F("records_delivered") + done_n,
                updated_at=now,
            )
        if per_proxy:
            if len(per_proxy) > 1:
                list(
                    Proxy.objects.filter(pk__in=list(per_proxy))
                    .order_by("id")
                    .select_for_update(of=("self",))
                    .values_list("id")
                )
            Proxy.objects.filter(pk__in=list(per_proxy)).update(
                success_count=F("success_count")
                + _by_pk({k: d for k, (d, _) in per_proxy.items()}),
                failure_count=F("failure_count")
                + _by_pk({k: f for k, (_, f) in per_proxy.items()}),
            )

    @staticmethod
    def _update_sessions(saved: list[_Saved], now: dt.datetime) -> None:
        """The sessions' counters and cursors (already fenced and locked): one UPDATE for
        the jobs that finished (dropping their lease in the same write), one for the
        others."""
        for over in (True, False):
            group = [p for p in saved if (p.page.next_cursor is None) is over]
            if not group:
                continue
            updates: dict[str, Any] = {
                "items_done": F("items_done") + _by_pk({p.session.pk: p.done for p in group}),
                "items_failed": F("items_failed") + _by_pk({p.session.pk: p.failed for p in group}),
                "last_activity_at": now,
            }
            # proxy_health.record_many leaves the sessions' error score to this write.
            tallies = {p.session.pk: proxy_health.tally(p.page.results) for p in group}
            scores = {pk: t.delta for pk, t in tallies.items() if t.successes or t.failures}
            if scores:
                updates["error_score"] = Case(
                    *(
                        When(pk=pk, then=Greatest(F("error_score") + Value(delta), Value(0.0)))
                        for pk, delta in scores.items()
                    ),
                    default=F("error_score"),
                    output_field=FloatField(),
                )
            if over:
                updates.update(
                    job_key="",
                    job_status="",
                    job_remote_id="",
                    job_cursor="",
                    jobs_done=F("jobs_done") + 1,
                    status=SessionStatus.READY,
                    # The job is over: drop the lease in the same write.
                    locked_by="",
                    locked_until=None,
                )
            else:
                updates.update(
                    job_cursor=Case(
                        *(
                            When(pk=p.session.pk, then=Value(p.page.next_cursor or ""))
                            for p in group
                        ),
                        output_field=CharField(),
                    ),
                    job_pages=F("job_pages") + 1,
                )
            BrowserSession.objects.filter(pk__in=[p.session.pk for p in group]).update(**updates)


def _assign(chosen: dict[int, list[int]], keys: dict[int, str]) -> None:
    """Give the items `chosen` for each session that session and its job key, if still
    pending: one statement over arrays on PostgreSQL (a CASE per session for the ORM)."""
    if pgbatch.on_postgresql():
        rows = [(item_id, pk) for pk, ids in chosen.items() for item_id in ids]
        table = connection.ops.quote_name(MissionItem._meta.db_table)
        pgbatch.execute_unnest(
            f"UPDATE {table} AS t SET status = %(assigned)s, session_id = v.session_id, "
            "job_key = v.job_key, attempts = t.attempts + 1 FROM {rows} "
            "WHERE t.id = v.id AND t.status = %(pending)s",
            {
                "id": ("bigint", [item_id for item_id, _ in rows]),
                "session_id": ("bigint", [pk for _, pk in rows]),
                "job_key": ("text", [keys[pk] for _, pk in rows]),
            },
            {"assigned": ItemStatus.ASSIGNED.value, "pending": ItemStatus.PENDING.value},
        )
        return
    MissionItem.objects.filter(
        id__in=[item_id for ids in chosen.values() for item_id in ids], status=ItemStatus.PENDING
    ).update(
        status=ItemStatus.ASSIGNED,
        session_id=Case(
            *(When(id__in=ids, then=Value(pk)) for pk, ids in chosen.items()),
            output_field=IntegerField(),
        ),
        job_key=Case(*(When(id__in=ids, then=Value(keys[pk])) for pk, ids in chosen.items())),
        attempts=F("attempts") + 1,
    )


def _by_pk(values: dict[int, int]) -> Any:
    """A per-row integer for an UPDATE of several rows (a constant for one)."""
    if len(set(values.values())) == 1:
        return Value(next(iter(values.values())))
    return Case(
        *(When(pk=pk, then=Value(n)) for pk, n in values.items()),
        default=Value(0),
        output_field=IntegerField(),
    )


__all__ = ["WorkerManager"]
