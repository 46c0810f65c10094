"""When to ask a worker about a running job again (issue #15, case 6). Pure: no database,
no HTTP; the clock is injected.

Without it a job's end was seen at the next WorkerManager tick (`worker_tick_s`, 10 s),
so a mission of small jobs waited ~10 s per job. Now a running job is followed at a
short interval that grows while nothing changes: `FIRST_S` (0.25 s) after it started or
last produced results, growing by half up to `worker_tick_s`. A job that produced results keeps
its interval (it is working; its end is near). The interval of every job on a worker is
at least `running jobs on that worker / MAX_POLLS_PER_WORKER_S`, so follow-up polls stay
under `MAX_POLLS_PER_WORKER_S` requests per second per worker, however many jobs run.

An idle fleet (no running job) makes no follow-up at all: the loop waits its usual
`worker_tick_s`, as before. Only the orchestrator's loop uses it (a tick called on its
own, as in the stepped tests, polls every running job)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

FIRST_S = 0.25
GROWTH = 1.5
MAX_POLLS_PER_WORKER_S = 5.0


@dataclass
class _Follow:
    worker_id: int
    due: float
    interval: float


class JobPolls:
    """Per running job (by session id): when its next poll is due."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._follow: dict[int, _Follow] = {}

    def not_due(self) -> list[int]:
        """Sessions polled recently whose next poll is not due yet (left out of the claim)."""
        now = self.clock()
        return sorted(pk for pk, f in self._follow.items() if f.due > now)

    def polled(
        self, jobs: Iterable[tuple[int, int, bool]], running: Iterable[int], cap_s: float
    ) -> None:
        """Record a round of polls: `jobs` (session id, worker id, whether the job produced
        results); `running`: the ids among them whose job is still running afterwards
        (the others are forgotten)."""
        now = self.clock()
        still = set(running)
        jobs = list(jobs)
        for pk, _, _ in jobs:
            if pk not in still:
                self._follow.pop(pk, None)
        per_worker = Counter(
            f.worker_id for pk, f in self._follow.items() if pk not in {j[0] for j in jobs}
        )
        per_worker.update(worker_id for pk, worker_id, _ in jobs if pk in still)
        for pk, worker_id, progressed in jobs:
            if pk not in still:
                continue
            floor = max(FIRST_S, per_worker[worker_id] / MAX_POLLS_PER_WORKER_S)
            last = self._follow.get(pk)
            if last is None:
                interval = FIRST_S
            elif progressed:
                interval = last.interval
            else:
                interval = last.interval * GROWTH
            interval = min(max(interval, floor), max(cap_s, floor))
            self._follow[pk] = _Follow(worker_id, now + interval, interval)

    def started(self, jobs: Iterable[tuple[int, int]]) -> None:
        """Jobs just started (session id, worker id): first poll after `FIRST_S`."""
        now = self.clock()
        for pk, worker_id in jobs:
            self._follow[pk] = _Follow(worker_id, now + FIRST_S, FIRST_S / GROWTH)

    def next_in(self, cap_s: float) -> float | None:
        """Seconds until the next follow-up is due (None when no job is followed: the
        loop waits its usual interval). Entries long overdue (the job ended elsewhere,
        or another process follows it) are dropped."""
        if not self._follow:
            return None
        now = self.clock()
        stale = [pk for pk, f in self._follow.items() if now - f.due > 2 * cap_s]
        for pk in stale:
            del self._follow[pk]
        if not self._follow:
            return None
        return max(0.0, min(f.due for f in self._follow.values()) - now)
