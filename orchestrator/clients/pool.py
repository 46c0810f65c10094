"""The external calls of one batch, made concurrently.

A tick that claimed several sessions or missions used to call their worker or writer
one after another, waiting on each answer. `call_all` runs such calls on a small,
bounded, process-wide thread pool and hands back every outcome in order, so the
caller (the tick's thread) makes its database writes as before, one batch after the
calls. Rules for what runs in the pool: client calls only (the httpx client is
thread-safe), never the ORM — no database connection is opened in a pool thread and
no lock is held across the calls; idempotency keys are computed by the caller.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from django.utils import timezone

from orchestrator.clients.base import ServiceError

T = TypeVar("T")

# Calls in flight at once per process (the shared httpx pool keeps 20 connections).
MAX_CONCURRENT_CALLS = 8

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


@dataclass
class Outcome(Generic[T]):
    """What one call returned, or the service error it raised."""

    value: T | None = None
    error: ServiceError | None = None
    # When the answer (or the error) came back: what the caller records as the time the
    # thing happened, not its tick's start (issue #15 case 8).
    at: dt.datetime | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=MAX_CONCURRENT_CALLS, thread_name_prefix="mc-calls"
            )
        return _executor


def _reset_after_fork() -> None:
    # A forked child has none of the parent's threads: build its own pool on first use.
    global _executor, _lock
    _executor = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def _guarded(call: Callable[[], T]) -> Outcome[T]:
    try:
        value = call()
    except ServiceError as exc:
        return Outcome(error=exc, at=timezone.now())
    return Outcome(value=value, at=timezone.now())


def call_all(calls: Sequence[Callable[[], T]]) -> list[Outcome[T]]:
    """Run `calls` concurrently (at most `MAX_CONCURRENT_CALLS` at once) and return
    their outcomes in the same order. A `ServiceError` becomes the outcome's `error`;
    any other exception is raised here, on the caller's thread, once every call of
    the batch has finished (so none is left running behind the caller's writes)."""
    if len(calls) <= 1:
        return [_guarded(call) for call in calls]
    futures = [_pool().submit(_guarded, call) for call in calls]
    outcomes: list[Outcome[T]] = []
    first_error: BaseException | None = None
    for future in futures:
        exc = future.exception()
        if exc is not None:
            first_error = first_error or exc
            outcomes.append(Outcome())
        else:
            outcomes.append(future.result())
    if first_error is not None:
        raise first_error
    return outcomes
