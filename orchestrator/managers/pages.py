"""Recording a round of result pages (the WorkerManager's results step, database half):
items, counters, cursors, evidence and the ETL outbox in one transaction, each page
fenced by its session's lease; `classify_page` and `fail_item` are the pure policy."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import chain
from typing import Any

from django.db import transaction
from django.db.models import Case, CharField, F, FloatField, Value, When
from django.db.models.functions import Greatest

from mission_control import evidence, evidence_files
from orchestrator import etl_outbox, events, leases, pgbatch, proxy_health, quality, untried
from orchestrator.clients.worker import Result, ResultsPage
from orchestrator.models import BrowserSession, ItemEvidence, Mission, MissionItem
from orchestrator.states import (
    PROXY_FAULT_CODES,
    ItemOutcome,
    ItemStatus,
    SessionStatus,
    classify_item_error,
)
from registry.config import Config
from registry.models import Proxy, SiteConfig


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


def record_pages(
    pages: list[tuple[BrowserSession, leases.Lease, ResultsPage]],
    owner: str,
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
            [(lease.id, lease.token, s.job_key) for s, lease, _ in pages],
        )
        live = leases.hold(
            BrowserSession.objects.filter(cond, locked_by=owner),
            [(s.pk, f"session {s.session_key}", s.mission_id) for s, _, _ in pages],
            "page",
        )
        saved = [_Saved(s, page, _results_by_item(page)) for s, _, page in pages if s.pk in live]
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
            page_of.assigned, ok, failed = classify_page(page_of.by_id, assigned)
            page_of.done = sum(len(ids) for ids in ok.values())
            for http_status, ids in ok.items():
                done[http_status].extend(ids)
            not_ok.update(dict.fromkeys(failed, page_of))
        to_update: list[MissionItem] = []
        failures: list[tuple[MissionItem, Result]] = []
        not_ok_items = MissionItem.objects.filter(pgbatch.ids_in(MissionItem, list(not_ok)))
        untried_left = _untried_left(now)
        for item in not_ok_items if not_ok else ():
            page_of = not_ok[item.pk]
            outcome = fail_item(
                item,
                page_of.by_id[item.pk],
                page_of.session,
                cfg.max_item_attempts,
                now,
                untried_left=untried_left,
            )
            page_of.proxy_failures += outcome.code in PROXY_FAULT_CODES
            page_of.retried += outcome.retry
            page_of.failed += not outcome.retry
            to_update.append(item)
            failures.append((item, page_of.by_id[item.pk]))
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
        store_evidence(failures, now)
        _add_counts(saved, now)
        etl_outbox.record_items([*chain(*done.values()), *(i.pk for i in to_update)], now)
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
        _update_sessions(saved, now)
        for page_of in finished:
            events.publish("job.finished", mission_id=page_of.session.mission_id)
        for page_of in saved:
            if page_of.retried:
                events.publish("items.pending", mission_id=page_of.session.mission_id)
    return {p.session.pk for p in saved}


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
            leases.hold(Mission.objects.filter(pk__in=list(per_mission)))
        done_n = pgbatch.count_by_pk(Mission, {pk: d for pk, (d, _) in per_mission.items()})
        failed_n = pgbatch.count_by_pk(Mission, {pk: f for pk, (_, f) in per_mission.items()})
        Mission.objects.filter(pk__in=list(per_mission)).update(
            done_items=F("done_items") + done_n,
            failed_items=F("failed_items") + failed_n,
            records_delivered=F("records_delivered") + done_n,
            updated_at=now,
        )
    if per_proxy:
        if len(per_proxy) > 1:
            leases.hold(Proxy.objects.filter(pk__in=list(per_proxy)))
        Proxy.objects.filter(pk__in=list(per_proxy)).update(
            success_count=F("success_count")
            + pgbatch.count_by_pk(Proxy, {k: d for k, (d, _) in per_proxy.items()}),
            failure_count=F("failure_count")
            + pgbatch.count_by_pk(Proxy, {k: f for k, (_, f) in per_proxy.items()}),
        )


def _update_sessions(saved: list[_Saved], now: dt.datetime) -> None:
    """The sessions' counters and cursors (already fenced and locked): one UPDATE for
    the jobs that finished (dropping their lease in the same write), one for the
    others."""
    for over in (True, False):
        group = [p for p in saved if (p.page.next_cursor is None) is over]
        if not group:
            continue
        updates: dict[str, Any] = {
            "items_done": F("items_done")
            + pgbatch.count_by_pk(BrowserSession, {p.session.pk: p.done for p in group}),
            "items_failed": F("items_failed")
            + pgbatch.count_by_pk(BrowserSession, {p.session.pk: p.failed for p in group}),
            "last_activity_at": now,
        }
        # proxy_health.record_many leaves the sessions' error score to this write.
        tallies = {p.session.pk: proxy_health.tally(p.page.results) for p in group}
        scores = {pk: t.delta for pk, t in tallies.items() if t.successes or t.failures}
        if scores:
            delta = pgbatch.by_pk(BrowserSession, scores, FloatField())
            updates["error_score"] = Case(
                When(pk__in=list(scores), then=Greatest(F("error_score") + delta, Value(0.0))),
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
                job_cursor=pgbatch.by_pk(
                    BrowserSession,
                    {p.session.pk: p.page.next_cursor or "" for p in group},
                    CharField(),
                ),
                job_pages=F("job_pages") + 1,
            )
        BrowserSession.objects.filter(pk__in=[p.session.pk for p in group]).update(**updates)


def _results_by_item(page: ResultsPage) -> dict[int, Result]:
    """A page's results by item id (ids that are not ours are ignored)."""
    by_id: dict[int, Result] = {}
    for r in page.results:
        try:
            by_id[int(r.item_id)] = r
        except (TypeError, ValueError):
            continue
    return by_id


def classify_page(
    by_id: dict[int, Result], assigned: set[int]
) -> tuple[list[int], dict[int | None, list[int]], list[int]]:
    """Which results of a page count (pure): those of items still assigned to its job,
    in page order; the successes by HTTP status; the failures (their items need the
    item-error policy, `fail_item`)."""
    mine = [i for i in by_id if i in assigned]
    ok: dict[int | None, list[int]] = defaultdict(list)
    failed: list[int] = []
    for item_id in mine:
        r = by_id[item_id]
        if r.status == "ok":
            ok[r.http_status].append(item_id)
        else:
            failed.append(item_id)
    return mine, dict(ok), failed


def _untried_left(now: dt.datetime) -> Callable[[MissionItem, str], bool]:
    """Whether a fitting proxy the item has not failed on exists for its domain (the
    fitting proxies read once per domain per round)."""
    fitting: dict[str, frozenset[str]] = {}

    def left(item: MissionItem, domain: str) -> bool:
        if domain not in fitting:
            fitting[domain] = untried.fitting_proxies(SiteConfig.for_domain(domain), domain, now)
        return bool(fitting[domain] - set(item.failed_proxies or ()))

    return left


def fail_item(
    item: MissionItem,
    r: Result,
    session: BrowserSession,
    max_attempts: int,
    now: dt.datetime,
    *,
    untried_left: Callable[[MissionItem, str], bool] | None = None,
) -> ItemOutcome:
    """Apply a failed result to its item (in memory; the caller writes it): the code,
    the message, the proxy that failed it, and back to pending or failed for good. A
    proxy's fault never fails an item for good while a fitting proxy it has not tried
    exists (`untried_left`; issue #15 case 4), whatever its attempts."""
    outcome = classify_item_error(r.error_code, r.http_status, item.attempts, max_attempts)
    item.error_code = outcome.code.value
    item.error_message = (r.error_message or r.error_code or "")[:2000]
    item.http_status = r.http_status
    proxy = session.proxy_external_id
    proxy_fault = outcome.code in PROXY_FAULT_CODES
    if proxy_fault and proxy and proxy not in item.failed_proxies:
        item.failed_proxies = [*item.failed_proxies, proxy]
    if proxy_fault and not outcome.retry and untried_left:
        outcome = replace(outcome, retry=untried_left(item, session.mission.domain))
    if outcome.retry:
        item.status = ItemStatus.PENDING
        item.session = None
        item.job_key = ""
    else:
        item.status = ItemStatus.FAILED
        item.finished_at = now
    return outcome


def store_evidence(failures: list[tuple[MissionItem, Result]], now: dt.datetime) -> int:
    """Keep each failed item's last snapshot (scrubbed), replacing an older one."""
    rows: dict[int, ItemEvidence] = {}
    for item, r in failures:
        snap = evidence.clean(r.snapshot)
        if snap is None:
            continue
        rows[item.pk] = ItemEvidence(
            item_id=item.pk,
            attempt=item.attempts,
            error_code=(r.error_code or "")[:40],
            final_url=snap["final_url"],
            http_status=_http_status(snap["http_status"]),
            headers=snap["headers"],
            html_excerpt=snap["html_excerpt"],
            block_marker=evidence.block_marker(snap["html_excerpt"])[:40],
            # A file under the data folder; the row keeps its path (issue #21).
            screenshot_file=evidence_files.save_png(
                item.mission_id, item.pk, item.attempts, evidence.png(snap)
            ),
            captured_at=now,
        )
    if rows:
        ItemEvidence.objects.filter(item_id__in=list(rows)).delete()
        ItemEvidence.objects.bulk_create(rows.values())
    return len(rows)


def _http_status(value: int | None) -> int | None:
    return value if value is not None and 100 <= value <= 999 else None
