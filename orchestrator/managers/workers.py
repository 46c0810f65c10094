"""WorkerManager (every 10 s): health and capacity of every worker and writer; hands
ready sessions their next job (items chosen by the distributor); follows jobs, pages
their results and streams each page to the mission's writer before saving the cursor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.job_polling import JobPolls
from orchestrator.managers.base import TickResult
from orchestrator.managers.dispatch import JobDispatch
from orchestrator.managers.results import (  # noqa: F401  (re-exported)
    JOB_RUNNING,
    JOB_STARTING,
    PAGES_PER_SESSION_PER_TICK,
    ResultDelivery,
)
from orchestrator.managers.worker_health import WorkerHealth


class WorkerManager(WorkerHealth, JobDispatch, ResultDelivery):
    """Health (`worker_health`), dispatch (`dispatch`, jobs started by `job_start`),
    result paging and delivery (`results`): one manager, one tick, four modules."""

    name = "workers"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job_polls = JobPolls()

    def tick(self) -> TickResult:
        result = self.tick_dispatch()
        for key, n in self.tick_results().counts.items():
            result.add(key, n)
        return result

    def lanes(self) -> dict[str, Callable[[], TickResult]]:
        # Dispatch and result delivery touch different sessions (ready ones without a
        # job, and those with a running job), each under its own lease, as they would
        # in two orchestrator processes: one need not wait for the other's calls.
        return {"": self.tick_dispatch, "results": self.tick_results}

    def tick_dispatch(self) -> TickResult:
        """Health checks (at their interval) and new jobs."""
        now, cfg = self.load()
        result = TickResult()
        if self.periodic("health", cfg.worker_tick_s):
            result.add("checked", self.check_health(now, cfg))
        if not cfg.paused:
            result.add("jobs_started", self.dispatch_jobs(now, cfg))
        return result

    def tick_results(self) -> TickResult:
        """Result paging and delivery of the running jobs."""
        now, cfg = self.load()
        result = TickResult()
        result.add("pages", self.collect_results(now, cfg))
        if self.throttle:
            # Running jobs are followed sooner than the tick (issue #15 case 6).
            result.follow_up_s = self.job_polls.next_in(cfg.worker_tick_s)
        return result


__all__ = ["WorkerManager"]
