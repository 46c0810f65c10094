"""Slot numbers on sessions: the database's backstop against a worker or proxy being
handed out beyond its `max_sessions`, and allocation counting slots from the sessions
themselves rather than trusting the `active_sessions` counters."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from orchestrator import actions, allocation
from orchestrator.models import BrowserSession
from registry import config
from registry.models import Proxy, Worker
from tests import factories

pytestmark = pytest.mark.django_db


def holding(**kwargs: object) -> BrowserSession:
    return factories.BrowserSessionFactory(holds_slot=True, status="busy", **kwargs)


def test_two_sessions_holding_the_same_proxy_slot_are_refused_by_the_database() -> None:
    proxy = factories.ProxyFactory(max_sessions=2)
    holding(proxy=proxy, proxy_slot=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        holding(proxy=proxy, proxy_slot=0)
    # A slot given back (holds_slot off) no longer counts; another slot number is fine.
    holding(proxy=proxy, proxy_slot=1)
    BrowserSession.objects.filter(proxy=proxy, proxy_slot=0).update(holds_slot=False)
    holding(proxy=proxy, proxy_slot=0)
    assert BrowserSession.objects.filter(proxy=proxy, holds_slot=True).count() == 2


def test_two_sessions_holding_the_same_worker_slot_are_refused_by_the_database() -> None:
    worker = factories.WorkerFactory(max_sessions=2)
    holding(worker=worker, worker_slot=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        holding(worker=worker, worker_slot=1)


@pytest.mark.parametrize("field", ["worker_slot", "proxy_slot"])
def test_a_session_holding_a_slot_must_say_which(field: str) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        holding(**{field: None})
    # Not holding: no slot needed (history rows, closed sessions).
    factories.BrowserSessionFactory(holds_slot=False, **{field: None})


def fleet(
    *, worker_max: int = 8, proxies: int = 1, proxy_max: int = 1
) -> tuple[Worker, list[Proxy]]:
    config.set_value("proxy_cooldown_s", 0)
    worker = factories.WorkerFactory(max_sessions=worker_max)
    factories.WriterFactory(is_default=True)
    factories.SiteConfigFactory(
        domain="*", proxy_types=["datacenter"], max_sessions=4, items_per_job=1
    )
    return worker, [factories.ProxyFactory(max_sessions=proxy_max) for _ in range(proxies)]


def claim(n_missions: int = 1) -> list[BrowserSession]:
    for m in range(n_missions):
        actions.create_mission(
            name=f"M{m}", urls=[f"https://shop.example/{m}/{i}" for i in range(4)]
        )
    outcomes = allocation.claim_due_missions("test", timezone.now(), config.load(), limit=10)
    return [s for _, a in outcomes for s in a.sessions]


def test_allocation_numbers_slots_from_zero_and_within_the_limits() -> None:
    fleet(worker_max=3, proxies=2, proxy_max=2)
    sessions = claim(n_missions=2)
    assert len(sessions) == 3  # the worker's three slots
    assert sorted(-1 if s.worker_slot is None else s.worker_slot for s in sessions) == [0, 1, 2]
    per_proxy: dict[int, list[int]] = {}
    for s in sessions:
        assert s.proxy_id is not None and s.proxy_slot is not None
        per_proxy.setdefault(s.proxy_id, []).append(s.proxy_slot)
    for slots in per_proxy.values():
        assert len(slots) == len(set(slots)) and max(slots) < 2


def test_drifted_counters_cannot_hand_out_a_slot_twice() -> None:
    """Counters that say "free" while sessions still hold every slot: nothing allocated."""
    worker, (proxy,) = fleet(worker_max=8, proxies=1, proxy_max=1)
    holding(worker=worker, worker_slot=0, proxy=proxy, proxy_slot=0)
    Proxy.objects.filter(pk=proxy.pk).update(active_sessions=0)  # the drift
    assert claim() == []
    assert BrowserSession.objects.filter(proxy=proxy, holds_slot=True).count() == 1


def test_drifted_worker_counter_cannot_overfill_the_worker() -> None:
    worker, _ = fleet(worker_max=2, proxies=4, proxy_max=1)
    for slot in range(2):
        holding(worker=worker, worker_slot=slot, proxy=None, proxy_slot=None)
    Worker.objects.filter(pk=worker.pk).update(active_sessions=0)
    assert claim() == []
    assert BrowserSession.objects.filter(worker=worker, holds_slot=True).count() == 2


def test_a_released_slot_is_taken_again() -> None:
    fleet(worker_max=1, proxies=1, proxy_max=1)
    (first,) = claim()
    assert (first.worker_slot, first.proxy_slot) == (0, 0)
    BrowserSession.objects.filter(pk=first.pk).update(holds_slot=False, status="closed")
    allocation.release_slot(first)
    (second,) = claim()
    assert (second.worker_slot, second.proxy_slot) == (0, 0)
    assert second.pk != first.pk
