"""Slots: the worker slots and proxy usage that sessions hold, counted rows changed in
the same transaction as the sessions they belong to (docs/engine.md, rule 5): which slot
numbers are free, giving them back, and recounting the counters from the sessions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Count, F, Value
from django.db.models.functions import Greatest

from orchestrator.leases import hold
from orchestrator.models import BrowserSession
from orchestrator.pgbatch import count_by_pk
from registry.models import Proxy, Worker


def free_slots(owner: str, limits: dict[int, int]) -> dict[int, list[int]]:
    """The slot numbers below each worker's or proxy's limit (`owner` is "worker" or
    "proxy"; `limits` maps its ids to `max_sessions`) that no slot-holding session uses,
    lowest first. Counted from the sessions themselves, so a drifted `active_sessions`
    counter can never hand out a slot twice; the caller holds the owners' rows locked,
    and the partial unique indexes on the slot numbers are the backstop."""
    if not limits:
        return {}
    held: dict[int, set[int]] = defaultdict(set)
    rows = BrowserSession.objects.filter(
        holds_slot=True, **{f"{owner}_id__in": list(limits)}
    ).values_list(f"{owner}_id", f"{owner}_slot")
    for owner_id, slot in rows:
        if slot is not None:
            held[owner_id].add(slot)
    return {pk: [s for s in range(limit) if s not in held[pk]] for pk, limit in limits.items()}


def release_slot(session: BrowserSession) -> None:
    """Give back the worker slot and proxy usage a session held (caller's transaction,
    after it flipped holds_slot with a conditional update)."""
    release_slots([session])


def release_slots(sessions: Iterable[BrowserSession]) -> None:
    """`release_slot` of many sessions: one UPDATE for their workers and one for their
    proxies, each row locked first in id order (as allocation locks them), so that
    batched releases and allocations never deadlock. A counter never goes below 0."""
    per_worker: dict[int, int] = defaultdict(int)
    per_proxy: dict[int, int] = defaultdict(int)
    for session in sessions:
        per_worker[session.worker_id] += 1
        if session.proxy_id:
            per_proxy[session.proxy_id] += 1
    for model, counts in ((Worker, per_worker), (Proxy, per_proxy)):
        if not counts:
            continue
        manager = model._default_manager
        rows = manager.filter(pk__in=list(counts), active_sessions__gt=0)
        if len(counts) > 1 and not hold(rows):  # several rows: locked in id order first
            continue
        minus = count_by_pk(model, counts)
        rows.update(active_sessions=Greatest(F("active_sessions") - minus, Value(0)))


def recompute_counters() -> dict[str, int]:
    """Recount worker slots and proxy usage from the sessions that hold them (rule 5).
    Returns how many rows were corrected."""
    fixed = {"workers": 0, "proxies": 0}
    with transaction.atomic():
        # Lock first (workers in id order, as allocation does), then count: a slot taken
        # or freed between a count and its write would otherwise be overwritten.
        workers = list(Worker.objects.select_for_update().order_by("id"))
        list(Proxy.objects.filter(active_sessions__gt=0).select_for_update().order_by("id"))
        held_w = dict(
            BrowserSession.objects.filter(holds_slot=True)
            .values_list("worker")
            .annotate(n=Count("id"))
            .order_by()
        )
        for worker in workers:
            want = held_w.get(worker.pk, 0)
            if worker.active_sessions != want:
                Worker.objects.filter(pk=worker.pk).update(active_sessions=want)
                fixed["workers"] += 1
        held_p = dict(
            BrowserSession.objects.filter(holds_slot=True, proxy__isnull=False)
            .values_list("proxy")
            .annotate(n=Count("id"))
            .order_by()
        )
        stale = Proxy.objects.filter(active_sessions__gt=0).exclude(pk__in=list(held_p))
        fixed["proxies"] += stale.update(active_sessions=0)
        for proxy_id, n in held_p.items():
            fixed["proxies"] += (
                Proxy.objects.filter(pk=proxy_id)
                .exclude(active_sessions=n)
                .update(active_sessions=n)
            )
    return fixed
