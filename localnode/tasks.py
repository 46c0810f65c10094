"""django-q2 tasks of the local worker (thin: they call the runner)."""

from __future__ import annotations

from localnode import runner


def run_pending_jobs() -> int:
    """Run every queued local job to its end; for deployments that only run qcluster
    (schedule it, e.g. every minute). Returns how many jobs ran."""
    return runner.run_pending_jobs()
