"""The follow-up policy for running jobs (issue #15 case 6), on an injected clock."""

from __future__ import annotations

import itertools

import pytest

from orchestrator.job_polling import FIRST_S, GROWTH, MAX_POLLS_PER_WORKER_S, JobPolls


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_quiet_running_job_is_followed_at_a_growing_interval_capped_at_the_tick() -> None:
    clock = Clock()
    polls = JobPolls(clock)
    waits = []
    for _ in range(12):
        polls.polled([(1, 7, False)], running=[1], cap_s=10.0)
        wait = polls.next_in(10.0)
        assert wait is not None
        waits.append(round(wait, 4))
        assert polls.not_due() == [1]
        clock.t += wait
        assert polls.not_due() == []
    assert waits[0] == FIRST_S
    assert all(abs(b - min(10.0, a * GROWTH)) < 1e-3 for a, b in itertools.pairwise(waits))
    assert waits[-1] == 10.0


def test_a_job_that_produced_results_keeps_its_interval() -> None:
    clock = Clock()
    polls = JobPolls(clock)
    polls.polled([(1, 7, False)], running=[1], cap_s=10.0)
    polls.polled([(1, 7, False)], running=[1], cap_s=10.0)
    before = polls.next_in(10.0)
    polls.polled([(1, 7, True)], running=[1], cap_s=10.0)
    assert polls.next_in(10.0) == before


def test_a_finished_job_is_forgotten_and_an_idle_fleet_asks_for_no_follow_up() -> None:
    polls = JobPolls(Clock())
    assert polls.next_in(10.0) is None
    polls.polled([(1, 7, False), (2, 7, False)], running=[2], cap_s=10.0)
    assert polls.not_due() == [2]
    polls.polled([(2, 7, True)], running=[], cap_s=10.0)
    assert polls.not_due() == [] and polls.next_in(10.0) is None


def test_entries_nobody_polls_any_more_are_dropped() -> None:
    clock = Clock()
    polls = JobPolls(clock)
    polls.polled([(1, 7, False)], running=[1], cap_s=10.0)
    clock.t += 30.0  # claimed by another process since, or ended elsewhere
    assert polls.next_in(10.0) is None


@pytest.mark.parametrize("jobs", [1, 10, 100])
def test_follow_ups_stay_under_the_per_worker_rate_however_many_jobs_run(jobs: int) -> None:
    clock = Clock()
    polls = JobPolls(clock)
    ids = list(range(1, jobs + 1))
    requests = 0
    horizon = 60.0
    end = clock.t + horizon
    while clock.t < end:
        due = [pk for pk in ids if pk not in polls.not_due()]
        requests += len(due)
        polls.polled([(pk, 7, False) for pk in due], running=ids, cap_s=10.0)
        wait = polls.next_in(10.0)
        assert wait is not None
        clock.t += max(wait, 0.01)
    # The first round polls every job; after it, at most MAX_POLLS_PER_WORKER_S a second
    # (and never more often than each job's own interval allows).
    assert requests <= jobs + MAX_POLLS_PER_WORKER_S * horizon
