"""Runs the local worker's jobs outside web requests.

`Runner.tick()` requeues jobs whose runner vanished, claims queued jobs up to its free
threads and hands each to a thread; a job's thread fetches its items one by one and
writes one `LocalResult` per item as soon as it finishes, so the job can be paged while
it runs. A claim is a lease (`locked_by`, `locked_until`, `lease_token`): every write of
the job's thread is conditional on its token, so a thread that outlived its lease
writes nothing, and a re-run skips the items that already have a result.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.db import (
    DatabaseError,
    OperationalError,
    close_old_connections,
    connection,
    connections,
    transaction,
)
from django.db.models import F, Max
from django.db.models.functions import Coalesce
from django.utils import timezone

from localnode import engines, politeness, remote
from localnode.extract import ParseError, extract
from localnode.models import (
    LocalJob,
    LocalResult,
    LocalSession,
    LocalWorkerState,
    recent_cutoff,
)
from mission_control import evidence
from mission_control.backoff import capped_exponential_s

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

LEASE_S = 120
DEFAULT_ITEM_TIMEOUT_S = 60.0
ENDED_SESSION_KEEP = dt.timedelta(days=1)
HOUSEKEEPING_EVERY = dt.timedelta(seconds=30)
# Browserbase sessions tagged by us that no local session holds are looked for at start
# and then on this period, so an orphan (a crash between create and record, a row lost)
# stops billing within minutes, not at the next restart.
RECONCILE_EVERY = dt.timedelta(minutes=5)


LOCK_RETRIES = 8


def retry_locked(fn: Callable[P, R]) -> Callable[P, R]:
    """Retry a short database step that met a locked SQLite database or table.

    PostgreSQL never raises this; a file SQLite waits (busy_timeout) but a shared-cache
    one (the in-memory test database) fails at once when threads overlap.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(LOCK_RETRIES):
            try:
                return fn(*args, **kwargs)
            except OperationalError as exc:
                if (
                    "locked" not in str(exc).lower()
                    or attempt == LOCK_RETRIES - 1
                    or connection.in_atomic_block
                ):
                    raise
                time.sleep(capped_exponential_s(attempt + 1, 0.05, 1.0))
        raise AssertionError("unreachable")

    return wrapper


@dataclass(frozen=True)
class Claim:
    job_id: int
    token: int


class LeaseLost(Exception):
    """The job was cancelled, or another runner took it over."""


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ---------------------------------------------------------------- claims and housekeeping


@retry_locked
def claim_jobs(name: str, limit: int, now: dt.datetime) -> list[Claim]:
    if limit <= 0:
        return []
    with transaction.atomic():
        queued = LocalJob.objects.filter(status=LocalJob.Status.QUEUED).order_by("id")
        if settings.IS_POSTGRES:
            queued = queued.select_for_update(skip_locked=True, of=("self",))
        # SQLite: the IMMEDIATE transaction already serializes claimers.
        ids = list(queued.values_list("id", flat=True)[:limit])
        if not ids:
            return []
        LocalJob.objects.filter(id__in=ids, status=LocalJob.Status.QUEUED).update(
            status=LocalJob.Status.RUNNING,
            locked_by=name,
            locked_until=now + dt.timedelta(seconds=LEASE_S),
            lease_token=F("lease_token") + 1,
            started_at=Coalesce(F("started_at"), now),
        )
        rows = LocalJob.objects.filter(id__in=ids, locked_by=name).values_list("id", "lease_token")
        return [Claim(job_id, token) for job_id, token in rows]


def requeue_expired(now: dt.datetime) -> int:
    """Running jobs whose lease ran out (their runner died) go back to the queue."""
    return LocalJob.objects.filter(status=LocalJob.Status.RUNNING, locked_until__lt=now).update(
        status=LocalJob.Status.QUEUED, locked_by="", locked_until=None
    )


def close_idle_sessions(now: dt.datetime) -> int:
    """Ready sessions idle longer than their `timeout_s` are closed."""
    closed = 0
    idle = LocalSession.objects.filter(status=LocalSession.Status.READY).only(
        "id", "timeout_s", "last_activity_at"
    )
    for session in idle:
        if session.last_activity_at + dt.timedelta(seconds=session.timeout_s) < now:
            closed += LocalSession.objects.filter(
                pk=session.pk, status=LocalSession.Status.READY
            ).update(
                status=LocalSession.Status.CLOSED,
                phase="closed",
                closed_at=now,
                error_code="session_timeout",
                error_message=f"Idle for more than {session.timeout_s} s.",
            )
    return closed


def purge_old(now: dt.datetime) -> None:
    """Results are kept until their session ended plus 10 minutes; sessions a day."""
    LocalResult.objects.filter(job__session__closed_at__lt=recent_cutoff(now)).delete()
    LocalSession.objects.filter(closed_at__lt=now - ENDED_SESSION_KEEP).delete()


def heartbeat(name: str, now: dt.datetime) -> None:
    LocalWorkerState.get()
    LocalWorkerState.objects.filter(pk=1).update(runner_name=name, runner_seen_at=now)


# ---------------------------------------------------------------- one job


def polite_fetch(
    engine: engines.Engine,
    url: str,
    session: LocalSession,
    manners: politeness.Manners,
    *,
    timeout_s: float,
    wait_until: str,
) -> engines.Fetch:
    """Fetch `url` as the job's options ask: robots.txt first (a disallowed URL is never
    requested), then the session's pause (`delay_ms`, or the site's Crawl-delay when
    larger), then the page."""
    delay = manners.delay_s
    if manners.respect_robots:
        headers = {"User-Agent": engines.USER_AGENT, **manners.headers}
        allowed, crawl_delay = politeness.ROBOTS.check(url, session.proxy_url or None, headers)
        if not allowed:
            return engines.Fetch(
                url, url, error_code="robots_disallowed", error_message="robots.txt disallows it"
            )
        delay = max(delay, min(crawl_delay, politeness.MAX_DELAY_S))
    politeness.PACER.wait_turn(str(session.pk), delay)
    try:
        return engine.fetch(url, timeout_s=timeout_s, wait_until=wait_until)
    finally:
        politeness.PACER.done(str(session.pk))


def _snapshot(fetched: engines.Fetch, error_code: str | None) -> dict[str, Any] | None:
    """The failed page's evidence for the codes the contract names; None otherwise."""
    if error_code not in evidence.SNAPSHOT_CODES:
        return None
    return evidence.build(
        fetched.final_url or fetched.url,
        fetched.http_status,
        fetched.headers,
        fetched.html,
        fetched.screenshot_png,
    )


class JobRun:
    """Executes one claimed job on the current thread."""

    def __init__(self, claim: Claim, name: str, stopping: threading.Event):
        self.claim = claim
        self.name = name
        self.stopping = stopping

    def _fenced(self) -> Any:
        return LocalJob.objects.filter(
            pk=self.claim.job_id,
            status=LocalJob.Status.RUNNING,
            lease_token=self.claim.token,
        )

    def selectors_for(self, options: dict[str, Any]) -> dict[str, str]:
        """The site's extraction rules travel in the job (`options.selectors`, worker
        API v1.1): the built-in node never reads Mission Control's tables."""
        selectors = options.get("selectors")
        return selectors if isinstance(selectors, dict) else {}

    def run(self) -> str:
        """Returns the job's outcome: completed, failed, cancelled, released or lost."""
        job, done_ids, sequence = self._load()
        session = job.session
        if session.status not in (LocalSession.Status.BUSY, LocalSession.Status.READY):
            self._finish(LocalJob.Status.CANCELLED, "cancelled", "The session is not open.")
            return "cancelled"
        options = job.options or {}
        timeout_s = float(options.get("timeout_s") or DEFAULT_ITEM_TIMEOUT_S)
        wait_until = str(options.get("wait_until") or "load")
        manners = politeness.Manners.from_options(options)
        try:
            engine = engines.open_engine(
                session.engine,
                session.proxy_url or None,
                manners.headers,
                connect_url=session.connect_url,
            )
        except engines.EngineUnavailable as exc:
            self._fail_session(str(exc))
            return "failed"
        try:
            for item in job.items:
                if item["item_id"] in done_ids:
                    continue
                if self.stopping.is_set():
                    self._release()
                    return "released"
                self._start_item(timeout_s)
                fetched = polite_fetch(
                    engine,
                    item["url"],
                    session,
                    manners,
                    timeout_s=timeout_s,
                    wait_until=wait_until,
                )
                sequence += 1
                self._record(item, fetched, sequence, options)
        except LeaseLost:
            return "lost"
        finally:
            engine.close()
        self._finish(LocalJob.Status.COMPLETED)
        return "completed"

    @retry_locked
    def _load(self) -> tuple[LocalJob, set[str], int]:
        """The job, the items that already have a result, and the last sequence."""
        job = LocalJob.objects.select_related("session").get(pk=self.claim.job_id)
        done_ids = set(LocalResult.objects.filter(job=job).values_list("item_id", flat=True))
        sequence = LocalResult.objects.filter(job=job).aggregate(m=Max("sequence"))["m"] or 0
        return job, done_ids, sequence

    @retry_locked
    def _start_item(self, timeout_s: float) -> None:
        """Before each navigation: stretch the lease over the item's timeout (a slow item
        is not mistaken for a dead runner) and stop early if the job was cancelled."""
        now = timezone.now()
        with transaction.atomic():
            lease = dt.timedelta(seconds=LEASE_S + timeout_s)
            if self._fenced().update(locked_until=now + lease) != 1:
                raise LeaseLost
            LocalSession.objects.filter(
                current_job_id=self.claim.job_id, status=LocalSession.Status.BUSY
            ).update(phase="navigating", last_activity_at=now)

    @retry_locked
    def _record(
        self, item: dict[str, str], fetched: engines.Fetch, sequence: int, options: dict[str, Any]
    ) -> None:
        now = timezone.now()
        data: dict[str, Any] = {}
        error_code, error_message = fetched.error_code, fetched.error_message
        if fetched.ok:
            try:
                data = extract(fetched.html, fetched.final_url, self.selectors_for(options))
            except ParseError as exc:
                error_code, error_message = "parse_error", str(exc)
        ok = error_code is None
        with transaction.atomic():
            updated = self._fenced().update(
                done=F("done") + (1 if ok else 0),
                failed=F("failed") + (0 if ok else 1),
                locked_until=now + dt.timedelta(seconds=LEASE_S),
            )
            if updated != 1:
                raise LeaseLost
            LocalResult.objects.create(
                job_id=self.claim.job_id,
                sequence=sequence,
                item_id=item["item_id"],
                url=item["url"],
                status="ok" if ok else "error",
                http_status=fetched.http_status,
                final_url=fetched.final_url[:2048],
                fetched_at=now,
                data=data,
                error_code=error_code or "",
                error_message=(error_message or "")[:2000],
                snapshot=_snapshot(fetched, error_code),
            )
            LocalSession.objects.filter(
                current_job_id=self.claim.job_id, status=LocalSession.Status.BUSY
            ).update(phase="extracting", last_activity_at=now)

    @retry_locked
    def _finish(self, status: str, error_code: str = "", error_message: str = "") -> None:
        now = timezone.now()
        with transaction.atomic():
            updated = self._fenced().update(
                status=status,
                finished_at=now,
                locked_by="",
                locked_until=None,
                error_code=error_code,
                error_message=error_message,
            )
            if updated:
                LocalSession.objects.filter(
                    current_job_id=self.claim.job_id, status=LocalSession.Status.BUSY
                ).update(
                    status=LocalSession.Status.READY,
                    phase="idle",
                    current_job=None,
                    last_activity_at=now,
                )

    @retry_locked
    def _fail_session(self, message: str) -> None:
        now = timezone.now()
        with transaction.atomic():
            if self._fenced().update(
                status=LocalJob.Status.FAILED,
                finished_at=now,
                locked_by="",
                locked_until=None,
                error_code="provider_error",
                error_message=message[:2000],
            ):
                LocalSession.objects.filter(current_job_id=self.claim.job_id).update(
                    status=LocalSession.Status.FAILED,
                    phase="failed",
                    current_job=None,
                    closed_at=now,
                    last_activity_at=now,
                    error_code="provider_error",
                    error_message=message[:2000],
                )

    @retry_locked
    def _release(self) -> None:
        """Give the job back to the queue (shutdown); a runner resumes after its results."""
        self._fenced().update(status=LocalJob.Status.QUEUED, locked_by="", locked_until=None)


def run_claimed_job(claim: Claim, name: str, stopping: threading.Event) -> str:
    try:
        return JobRun(claim, name, stopping).run()
    except Exception:
        log.exception("localnode job %s crashed", claim.job_id, extra={"job_id": claim.job_id})
        # Parked: the job fails instead of being retried forever by every runner.
        try:
            JobRun(claim, name, stopping)._finish(
                LocalJob.Status.FAILED, "worker_error", "The local worker crashed on this job."
            )
        except DatabaseError:
            log.exception("could not park job %s", claim.job_id)
        return "failed"
    finally:
        # Pool threads own their connections; close them so none leak.
        connections.close_all()


# ---------------------------------------------------------------- the runner


class Runner:
    def __init__(self, *, name: str | None = None, max_workers: int | None = None):
        self.name = name or runner_name()
        self.max_workers = max_workers or LocalWorkerState.get().max_sessions
        self.stopping = threading.Event()
        self.wakeup = threading.Event()
        self.pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="localnode")
        self.running: dict[int, Future[str]] = {}
        self.housekeeping_due = timezone.now()
        self.reconcile_due = timezone.now()

    def _done(self, future: Future[str]) -> None:
        self.wakeup.set()

    @retry_locked
    def tick(self, now: dt.datetime | None = None) -> int:
        """One pass: housekeeping, then claim jobs for the free threads. Returns how many
        jobs were claimed. `now` is injectable for tests."""
        if not connection.in_atomic_block:
            close_old_connections()
        now = now or timezone.now()
        self.running = {k: f for k, f in self.running.items() if not f.done()}
        heartbeat(self.name, now)
        if now >= self.reconcile_due:
            # At start, then every RECONCILE_EVERY: remote sessions this worker lost
            # track of stop billing.
            self.reconcile_due = now + RECONCILE_EVERY
            remote.reconcile(now)
        requeue_expired(now)
        if now >= self.housekeeping_due:
            close_idle_sessions(now)
            remote.release_ended(now)
            purge_old(now)
            self.housekeeping_due = now + HOUSEKEEPING_EVERY
        if self.stopping.is_set():
            return 0
        claims = claim_jobs(self.name, self.max_workers - len(self.running), now)
        for claim in claims:
            future = self.pool.submit(run_claimed_job, claim, self.name, self.stopping)
            future.add_done_callback(self._done)
            self.running[claim.job_id] = future
        return len(claims)

    def run_once(self) -> int:
        """Process every queued job (also jobs queued meanwhile) and return how many ran."""
        total = 0
        try:
            while True:
                claimed = self.tick()
                total += claimed
                if not claimed and not self.running:
                    return total
                self.wakeup.wait(0.2)
                self.wakeup.clear()
        finally:
            self.shutdown(wait=True)

    def run_forever(self, poll_s: float = 1.0) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    self.tick()
                except DatabaseError:
                    # The database may be restarting; the next tick tries again.
                    log.exception("localnode runner tick failed")
                self.wakeup.wait(poll_s)
                self.wakeup.clear()
        finally:
            self.shutdown(wait=True)

    def stop(self) -> None:
        self.stopping.set()
        self.wakeup.set()

    def shutdown(self, wait: bool) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=not wait)


def run_pending_jobs(max_workers: int | None = None) -> int:
    return Runner(max_workers=max_workers).run_once()
