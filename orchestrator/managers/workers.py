"""WorkerManager (every 10 s): health and capacity of every worker and writer; hands
ready sessions their next job (items chosen by the distributor); follows jobs, pages
their results and streams each page to the mission's writer before saving the cursor."""

from __future__ import annotations

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
    """Health (`worker_health`), dispatch (`dispatch`), result paging and delivery
    (`results`): one manager, one tick, three modules."""

    name = "workers"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job_polls = JobPolls()

    def tick(self) -> TickResult:
        now, cfg = self.load()
        result = TickResult()
        if self.periodic("health", cfg.worker_tick_s):
            result.add("checked", self.check_health(now, cfg))
        if not cfg.paused:
            result.add("jobs_started", self.dispatch_jobs(now, cfg))
        result.add("pages", self.collect_results(now, cfg))
        if self.throttle:
            # Running jobs are followed sooner than the tick (issue #15 case 6).
            result.follow_up_s = self.job_polls.next_in(cfg.worker_tick_s)
        return result


__all__ = ["WorkerManager"]
