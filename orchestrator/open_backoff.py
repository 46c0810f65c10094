"""How many sessions may be opened on each worker this tick (pure: `now` passed in).

A worker that failed an open (unreachable, 5xx, 429) or answered 409
`capacity_exhausted` is backed off: no open goes to it until its wait is over, then
one probe; the probe's success lifts the backoff, its failure doubles the wait (up to
`cap_s`). A healthy worker takes every open asked of it. This keeps an unhealthy or
full worker at a few attempts, instead of one per requested session per tick (the
outage of issue #15 saw about 600 refused opens a minute).

State is per process (one SessionManager): a second orchestrator probes on its own,
so the fleet sends at most one probe per worker per process and wait.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from orchestrator.states import RetryPolicy


@dataclass
class _Backoff:
    failures: int
    until: dt.datetime


@dataclass
class OpenBackoff:
    base_s: float = 1.0
    cap_s: float = 30.0
    _state: dict[int, _Backoff] = field(default_factory=dict)

    def allowed(self, worker_id: int, now: dt.datetime) -> int | None:
        """Opens allowed on the worker now: None (no limit), 1 (a probe) or 0."""
        state = self._state.get(worker_id)
        if state is None:
            return None
        return 1 if now >= state.until else 0

    def failed(self, worker_id: int, now: dt.datetime) -> dt.datetime:
        """An open failed for the worker's sake: wait longer. Returns the next probe time."""
        state = self._state.get(worker_id)
        failures = (state.failures if state else 0) + 1
        wait = RetryPolicy(base_s=self.base_s, cap_s=self.cap_s).delay_s(failures)
        until = now + dt.timedelta(seconds=wait)
        self._state[worker_id] = _Backoff(failures, until)
        return until

    def succeeded(self, worker_id: int) -> None:
        self._state.pop(worker_id, None)

    def backing_off(self, worker_id: int) -> bool:
        return worker_id in self._state


def admit(
    backoff: OpenBackoff, worker_ids: list[int], now: dt.datetime
) -> tuple[list[int], list[int]]:
    """Split the workers of requested sessions (one entry per session, in order) into
    the positions that may call now and those that wait (kept requested)."""
    left: dict[int, int | None] = {}
    go: list[int] = []
    wait: list[int] = []
    for i, worker_id in enumerate(worker_ids):
        if worker_id not in left:
            left[worker_id] = backoff.allowed(worker_id, now)
        budget = left[worker_id]
        if budget is None:
            go.append(i)
        elif budget > 0:
            left[worker_id] = budget - 1
            go.append(i)
        else:
            wait.append(i)
    return go, wait
