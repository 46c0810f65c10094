"""A worker's slots are free only when the worker says so.

A session we give up on while its worker is unreachable (marked `disconnected`, or a
requested one whose open may have reached the worker) keeps its slot (`holds_slot`)
until the worker answers again and confirms the DELETE (by remote id, or by its
session key when the id was never recorded). Freeing the slot at once made the
worker look empty to us while it still held every session: after a one-minute outage
it answered 409 `capacity_exhausted` to thousands of opens until its own idle timeout
(issue #15).

Only when the worker stays unreachable longer than a session's idle timeout (the
contract's default `timeout_s`, after which the worker has closed it itself) is the
slot given back without the call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db.models import Count, Q

from orchestrator.models import BrowserSession
from orchestrator.states import SessionStatus
from registry.models import Worker

# The worker closes an idle session after `timeout_s` (contract default 900 s).
REMOTE_IDLE_TIMEOUT = dt.timedelta(seconds=900)

# Sessions whose slot waits for a DELETE on their worker.
AWAITING_CLOSE = (
    SessionStatus.CLOSING,
    SessionStatus.STUCK,
    SessionStatus.DISCONNECTED,
    SessionStatus.FAILED,
)


def awaiting_close_q(now: dt.datetime) -> Q:
    """The close claim's condition (served by the partial index on holds_slot): the
    sessions waiting for a DELETE whose worker may be called now, or that waited so
    long that the worker closed them itself. Sessions of an unreachable worker are
    left out, so they never fill the claim batch ahead of closes that can go."""
    reachable = Q(worker__circuit_open_until__isnull=True) | Q(worker__circuit_open_until__lte=now)
    return Q(holds_slot=True, status__in=list(AWAITING_CLOSE)) & (
        reachable | Q(updated_at__lt=now - REMOTE_IDLE_TIMEOUT)
    )


def worker_closed_it_itself(session: BrowserSession, now: dt.datetime) -> bool:
    """The worker has been unreachable so long that its idle timeout closed the session."""
    since = session.updated_at or now
    return now - since > REMOTE_IDLE_TIMEOUT


def slot_limits(workers: Iterable[Worker]) -> dict[int, int]:
    """Each worker's slot limit for allocation: its configured `max_sessions`, lowered
    to what the worker itself reported on its last `/health` (issue #15 case 1). The
    sessions it reported beyond those we hold (leftovers, another orchestrator's) take
    slots too, so a worker that says it is full gets no open. Without a report the
    configured limit stands."""
    workers = list(workers)
    ours: dict[int, int] = dict(
        BrowserSession.objects.filter(holds_slot=True, worker_id__in=[w.pk for w in workers])
        .values_list("worker_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    limits: dict[int, int] = {}
    for w in workers:
        limit = w.max_sessions
        if w.reported_max_sessions is not None:
            limit = min(limit, w.reported_max_sessions)
            foreign = max(0, (w.reported_active_sessions or 0) - ours.get(w.pk, 0))
            limit = max(0, min(limit, w.reported_max_sessions - foreign))
        limits[w.pk] = limit
    return limits
