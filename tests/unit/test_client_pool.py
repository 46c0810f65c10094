"""orchestrator.clients.pool: the external calls of a batch, made concurrently."""

from __future__ import annotations

import threading

import pytest

from orchestrator.clients import pool
from orchestrator.clients.base import ServiceError


def test_it_returns_outcomes_in_call_order_with_service_errors_as_data() -> None:
    def fail() -> int:
        raise ServiceError("http_503", "down")

    outcomes = pool.call_all([lambda: 1, fail, lambda: 3])

    assert [o.value for o in outcomes] == [1, None, 3]
    assert outcomes[1].error is not None and outcomes[1].error.code == "http_503"


def test_it_runs_the_calls_of_a_batch_at_the_same_time() -> None:
    n = 3
    barrier = threading.Barrier(n, timeout=5)  # breaks unless all n are in flight at once

    outcomes = pool.call_all([lambda i=i: (barrier.wait(), i)[1] for i in range(n)])

    assert [o.value for o in outcomes] == [0, 1, 2]


def test_it_raises_other_errors_on_the_caller_after_every_call_finished() -> None:
    finished = threading.Event()

    def slow() -> int:
        finished.wait(0.2)
        finished.set()
        return 1

    def broken() -> int:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        pool.call_all([broken, slow])
    assert finished.is_set()


def test_a_single_call_runs_on_the_callers_thread() -> None:
    outcomes = pool.call_all([threading.get_ident])

    assert outcomes[0].value == threading.get_ident()
