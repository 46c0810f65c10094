"""`allocate_many`: the sessions of several missions allocated in one pass, in request
order, sharing worker slots and proxy room across the whole batch."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator

import pytest
from django.db import transaction
from django.utils import timezone

from orchestrator import events, site_breaker
from orchestrator.allocation import Allocation, Request, allocate_many, allocate_sessions
from orchestrator.models import BrowserSession, DomainBreaker, Mission
from orchestrator.states import ErrorCode
from registry.models import Proxy, SiteConfig, Worker
from tests import factories

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _no_leftover_wakeups() -> Iterator[None]:
    # Sessions requested inside the test's rolled-back transaction queue NOTIFY wake-ups
    # on the thread; drop them so later transactional tests see only their own.
    yield
    events._pending.wake.clear()


def site(**kwargs: object) -> SiteConfig:
    defaults: dict[str, object] = {"domain": "*", "proxy_types": ["datacenter"], "max_sessions": 4}
    return SiteConfig(**{**defaults, **kwargs})


def allocate(requests: list[Request], now: dt.datetime = NOW) -> list[Allocation]:
    with transaction.atomic():
        return allocate_many(requests, now)


def counts(allocations: list[Allocation]) -> list[int]:
    return [len(a.sessions) for a in allocations]


def pause(domain: str) -> None:
    DomainBreaker.objects.create(
        domain=domain,
        state=DomainBreaker.State.OPEN,
        paused_until=NOW + dt.timedelta(minutes=15),
        reason="bloqueios demais",
        updated_at=NOW,
    )


def test_each_mission_of_the_batch_gets_its_sessions_on_least_recently_used_proxies() -> None:
    workers = [factories.WorkerFactory(max_sessions=8) for _ in range(2)]
    # Created most recently used first: the allocation must take them in reverse.
    proxies = [
        factories.ProxyFactory(max_sessions=2, last_used_at=NOW - dt.timedelta(minutes=m))
        for m in range(1, 5)
    ]
    lru = proxies[::-1]
    first, second = factories.MissionFactory(), factories.MissionFactory(attempt=2)
    factories.BrowserSessionFactory(
        mission=first,
        worker=workers[0],
        proxy=None,
        session_key=f"m{first.pk}-a1-s1",
        status="closed",
    )

    allocations = allocate([Request(first, 2, site()), Request(second, 1, site())])

    assert counts(allocations) == [2, 1]
    assert all(a.wait_code == "" for a in allocations)
    assert [s.proxy for s in allocations[0].sessions] == lru[:2]
    assert [s.proxy for s in allocations[1].sessions] == lru[2:3]
    # Keys continue after the mission's existing session; a new mission starts at 1.
    assert [s.session_key for s in allocations[0].sessions] == [
        f"m{first.pk}-a1-s2",
        f"m{first.pk}-a1-s3",
    ]
    assert [s.session_key for s in allocations[1].sessions] == [f"m{second.pk}-a2-s1"]

    created = [s for a in allocations for s in a.sessions]
    assert BrowserSession.objects.filter(holds_slot=True, status="requested").count() == 3
    by_worker = Counter(s.worker_id for s in created)
    for worker in workers:
        worker.refresh_from_db()
        assert worker.active_sessions == by_worker[worker.pk]
    by_proxy = Counter(s.proxy_id for s in created)
    for proxy in proxies:
        proxy.refresh_from_db()
        assert proxy.active_sessions == by_proxy[proxy.pk]
        if by_proxy[proxy.pk]:
            assert proxy.last_used_at == NOW
    assert proxies[0].last_used_at == NOW - dt.timedelta(minutes=1)  # the unused one
    worker_slots = [(s.worker_id, s.worker_slot) for s in created]
    proxy_slots = [(s.proxy_id, s.proxy_slot) for s in created]
    assert len(set(worker_slots)) == len(worker_slots)
    assert len(set(proxy_slots)) == len(proxy_slots)


def test_a_proxy_reused_in_the_batch_takes_a_new_slot_each_time() -> None:
    factories.WorkerFactory(max_sessions=8)
    proxy = factories.ProxyFactory(max_sessions=3)
    missions = [factories.MissionFactory() for _ in range(2)]

    allocations = allocate([Request(missions[0], 2, site()), Request(missions[1], 1, site())])

    assert counts(allocations) == [2, 1]
    assert sorted(
        -1 if s.proxy_slot is None else s.proxy_slot for a in allocations for s in a.sessions
    ) == [0, 1, 2]
    proxy.refresh_from_db()
    assert proxy.active_sessions == 3


@pytest.mark.parametrize(
    "other_rules",
    [{"countries": ["BR"]}, {"blocked_proxies": ["px-us"]}],
    ids=["countries", "blocked-proxies"],
)
def test_a_proxy_that_fits_two_site_rules_is_not_overfilled_across_the_batch(
    other_rules: dict[str, object],
) -> None:
    factories.WorkerFactory(max_sessions=8)
    shared = factories.ProxyFactory(external_id="px-br", country="BR", max_sessions=2)
    factories.ProxyFactory(external_id="px-us", country="US", max_sessions=1)
    first = factories.MissionFactory(domain="a.example")
    second = factories.MissionFactory(domain="b.example")

    allocations = allocate(
        [
            Request(first, 2, site(domain="a.example")),
            Request(second, 2, site(domain="b.example", **other_rules)),
        ]
    )

    # The first takes both proxies; the second only fits the shared one, which has
    # room for one more session.
    assert counts(allocations) == [2, 1]
    assert [s.proxy for s in allocations[1].sessions] == [shared]
    shared.refresh_from_db()
    assert shared.active_sessions == 2
    assert BrowserSession.objects.filter(proxy=shared, holds_slot=True).count() == 2


def test_requests_are_served_in_order_until_the_workers_are_full() -> None:
    worker = factories.WorkerFactory(max_sessions=3)
    for _ in range(6):
        factories.ProxyFactory()
    missions = [factories.MissionFactory() for _ in range(3)]

    allocations = allocate([Request(m, 2, site()) for m in missions])

    assert counts(allocations) == [2, 1, 0]
    assert allocations[2].wait_code == ErrorCode.ALLOC_NO_CAPACITY
    assert allocations[2].wait_reason == "workers sem capacidade (3/3)"
    worker.refresh_from_db()
    assert worker.active_sessions == 3


def test_no_usable_worker_at_all_is_reported_as_such() -> None:
    factories.WorkerFactory(enabled=False)
    factories.ProxyFactory()

    (allocation,) = allocate([Request(factories.MissionFactory(), 1, site())])

    assert allocation.sessions == []
    assert allocation.wait_code == ErrorCode.ALLOC_NO_WORKER


def test_a_request_no_proxy_fits_waits_while_the_others_are_served() -> None:
    factories.WorkerFactory(max_sessions=8)
    factories.ProxyFactory(type="datacenter")
    residential = factories.MissionFactory(domain="r.example")
    datacenter = factories.MissionFactory(domain="d.example")

    allocations = allocate(
        [
            Request(residential, 2, site(domain="r.example", proxy_types=["residential"])),
            Request(datacenter, 1, site(domain="d.example")),
        ]
    )

    assert counts(allocations) == [0, 1]
    assert allocations[0].wait_code == ErrorCode.ALLOC_NO_PROXY
    assert allocations[0].wait_reason == "nenhum proxy residential qualquer país cadastrado"
    assert Worker.objects.get().active_sessions == 1


def test_a_paused_domain_waits_for_its_breaker_while_other_domains_are_allocated() -> None:
    factories.WorkerFactory(max_sessions=8)
    for _ in range(3):
        factories.ProxyFactory()
    pause("paused.example")
    paused = factories.MissionFactory(domain="paused.example")
    open_ = factories.MissionFactory(domain="open.example")

    allocations = allocate(
        [
            Request(paused, 2, site(domain="paused.example")),
            Request(open_, 2, site(domain="open.example")),
        ]
    )

    assert counts(allocations) == [0, 2]
    assert allocations[0].wait_code == site_breaker.WAIT_CODE
    assert "pausado pelo disjuntor" in allocations[0].wait_reason
    assert not BrowserSession.objects.filter(mission=paused).exists()


def test_a_request_for_no_sessions_gets_an_empty_allocation() -> None:
    factories.WorkerFactory(max_sessions=8)
    factories.ProxyFactory()
    idle, busy = factories.MissionFactory(), factories.MissionFactory()

    only_idle = allocate([Request(idle, 0, site())])
    mixed = allocate([Request(idle, 0, site()), Request(busy, 1, site())])

    assert only_idle == [Allocation([])]
    assert mixed[0] == Allocation([])
    assert counts(mixed) == [0, 1]
    assert not BrowserSession.objects.filter(mission=idle).exists()


@pytest.mark.django_db(transaction=True)
def test_an_allocation_outside_a_transaction_is_refused() -> None:
    mission = factories.MissionFactory()
    with pytest.raises(AssertionError, match="inside a transaction"):
        allocate_many([Request(mission, 1, site())], NOW)


def scenario() -> list[Request]:
    """A mixed batch: more wanted than the worker holds (the last waits for capacity), one
    domain paused, one site no proxy fits, sites sharing proxies with other rules."""
    factories.WorkerFactory(max_sessions=5)
    factories.ProxyFactory(external_id="px-br", country="BR", max_sessions=2)
    factories.ProxyFactory(external_id="px-us", country="US", max_sessions=1)
    factories.ProxyFactory(external_id="px-ar", country="AR", max_sessions=2)
    pause("paused.example")
    rules: list[tuple[str, int, dict[str, object]]] = [
        ("a.example", 2, {}),
        ("paused.example", 2, {}),
        ("b.example", 2, {"countries": ["BR"]}),
        ("c.example", 1, {"proxy_types": ["mobile"]}),
        ("d.example", 0, {}),
        ("e.example", 3, {"blocked_proxies": ["px-us"]}),
        ("f.example", 2, {}),
    ]
    return [
        Request(factories.MissionFactory(domain=domain), n, site(domain=domain, **extra))
        for domain, n, extra in rules
    ]


def test_the_batch_allocates_as_many_sessions_as_one_call_per_mission() -> None:
    requests = scenario()
    with transaction.atomic():
        savepoint = transaction.savepoint()
        batch = allocate_many(requests, NOW)
        transaction.savepoint_rollback(savepoint)
        one_by_one = [
            allocate_sessions(r.mission, r.n, r.site, NOW + dt.timedelta(seconds=i))
            for i, r in enumerate(requests)
        ]

    assert counts(batch) == counts(one_by_one)
    assert counts(batch) == [2, 0, 1, 0, 0, 2, 0]
    # The same reasons, except that one call at a time finds the full worker unusable
    # (no worker) where the batch still holds it (no capacity).
    assert [a.wait_code for a in batch] == [
        "",
        site_breaker.WAIT_CODE,
        "",
        ErrorCode.ALLOC_NO_PROXY,
        "",
        "",
        ErrorCode.ALLOC_NO_CAPACITY,
    ]
    assert [a.wait_code for a in one_by_one][:6] == [a.wait_code for a in batch][:6]
    assert one_by_one[6].wait_code == ErrorCode.ALLOC_NO_WORKER
    assert sum(Proxy.objects.values_list("active_sessions", flat=True)) == 5


def test_allocate_sessions_is_the_batch_of_one() -> None:
    factories.WorkerFactory(max_sessions=8)
    factories.ProxyFactory()
    mission = factories.MissionFactory()

    with transaction.atomic():
        allocation = allocate_sessions(mission, 1, site(), timezone.now())

    assert [s.session_key for s in allocation.sessions] == [f"m{mission.pk}-a1-s1"]
    assert Mission.objects.get(pk=mission.pk).sessions.count() == 1
