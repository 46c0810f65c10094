"""`allocation.plan_sessions`: the pure core of allocation (no database: unsaved rows
are plain data here), property-tested like the distributor."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator import site_breaker
from orchestrator.allocation import PlanRequest, plan_sessions
from orchestrator.states import ErrorCode
from registry.models import Proxy, Worker


def workers_of(specs: list[tuple[int, int]]) -> list[Worker]:
    return [
        Worker(pk=i + 1, max_sessions=m, active_sessions=min(a, m))
        for i, (m, a) in enumerate(specs)
    ]


def free_of(workers: list[Worker]) -> dict[int, list[int]]:
    return {w.pk: list(range(w.active_sessions, w.max_sessions)) for w in workers}


proxy_specs = st.lists(st.tuples(st.integers(1, 3), st.integers(0, 3)), max_size=6)
worker_specs = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), max_size=4)
request_specs = st.lists(
    st.tuples(st.integers(0, 4), st.booleans(), st.booleans(), st.lists(st.integers(0, 5))),
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(worker_specs, proxy_specs, request_specs)
def test_plan_never_overbooks_and_explains_every_request(
    wspecs: list[tuple[int, int]],
    pspecs: list[tuple[int, int]],
    rspecs: list[tuple[int, bool, bool, list[int]]],
) -> None:
    workers = workers_of(wspecs)
    proxies = [
        Proxy(pk=100 + i, max_sessions=m, active_sessions=min(a, m))
        for i, (m, a) in enumerate(pspecs)
    ]
    by_index = {i: p for i, p in enumerate(proxies)}
    requests = [
        PlanRequest(
            n=n,
            paused="pausado" if paused else "",
            direct_ok=direct,
            candidates=list(
                {p.pk: p for p in (by_index[j] for j in picks if j in by_index)}.values()
            ),
        )
        for n, paused, direct, picks in rspecs
    ]
    room = {p.pk: p.max_sessions - p.active_sessions for p in proxies}
    pslots = {p.pk: list(range(p.active_sessions, p.max_sessions)) for p in proxies}
    wslots = free_of(workers)
    before = {w.pk: w.active_sessions for w in workers}

    plan = plan_sessions(requests, workers, wslots, room, pslots)

    # Pure: the inputs are untouched.
    assert {w.pk: w.active_sessions for w in workers} == before and wslots == free_of(workers)
    taken = [s for slots in plan.chosen.values() for s in slots]
    per_worker = Counter(s.worker.pk for s in taken)
    per_proxy = Counter(s.proxy.pk for s in taken if s.proxy is not None)
    for w in workers:
        assert before[w.pk] + per_worker[w.pk] <= w.max_sessions
        assert plan.worker_active[w.pk] == before[w.pk] + per_worker[w.pk]
    for p in proxies:
        assert per_proxy[p.pk] <= room[p.pk]
    # No slot number handed out twice.
    assert len({(s.worker.pk, s.worker_slot) for s in taken}) == len(taken)
    proxied = [s for s in taken if s.proxy is not None]
    assert len({(s.proxy.pk, s.proxy_slot) for s in proxied if s.proxy}) == len(proxied)
    for i, r in enumerate(requests):
        got = plan.chosen.get(i, [])
        assert len(got) <= max(0, r.n)
        if r.n <= 0:
            assert i not in plan.chosen and i not in plan.waits
            continue
        # Each request gets sessions or a reason to wait, never both nor neither.
        assert (i in plan.chosen) != (i in plan.waits)
        if r.paused:
            assert i not in plan.chosen
        for s in got:
            assert (s.proxy is None and r.direct_ok) or s.proxy in r.candidates
        if i in plan.waits:
            assert plan.waits[i][0] in {
                ErrorCode.ALLOC_NO_WORKER,
                ErrorCode.ALLOC_NO_CAPACITY,
                ErrorCode.ALLOC_NO_PROXY,
                site_breaker.WAIT_CODE,
            }


def test_spreads_over_workers_and_prefers_unused_proxies() -> None:
    workers = workers_of([(2, 0), (2, 0)])
    proxies = [Proxy(pk=7, max_sessions=2), Proxy(pk=8, max_sessions=2)]
    plan = plan_sessions(
        [PlanRequest(n=2, direct_ok=False, candidates=proxies)],
        workers,
        free_of(workers),
        {7: 2, 8: 2},
        {7: [0, 1], 8: [0, 1]},
    )
    assert [(s.worker.pk, s.proxy and s.proxy.pk) for s in plan.chosen[0]] == [(1, 7), (2, 8)]


def test_waits_say_why() -> None:
    assert plan_sessions([PlanRequest(n=1)], [], {}, {}, {}).waits == {
        0: (ErrorCode.ALLOC_NO_WORKER, "nenhum worker disponível")
    }
    full = workers_of([(1, 1)])
    assert plan_sessions([PlanRequest(n=1)], full, free_of(full), {}, {}).waits == {
        0: (ErrorCode.ALLOC_NO_CAPACITY, "workers sem capacidade (1/1)")
    }
    one = workers_of([(1, 0)])
    assert plan_sessions([PlanRequest(n=1, direct_ok=False)], one, free_of(one), {}, {}).waits == {
        0: (ErrorCode.ALLOC_NO_PROXY, "")
    }
