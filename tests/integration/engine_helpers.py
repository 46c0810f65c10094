"""Helpers to drive the engine one step at a time against the loopback fakes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.models import Mission
from orchestrator.runner import Orchestrator
from registry.models import Proxy, SiteConfig, Worker, Writer
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.fleet import register_fleet

FAST_CONFIG = {
    "retry_backoff_base_s": 0.0,
    "retry_jitter": 0.0,
    "proxy_cooldown_s": 0,
    "http_max_attempts": 1,
    "http_deadline_s": 5.0,
    "http_read_timeout_s": 2.0,
    "circuit_failure_threshold": 3,
    "circuit_open_s": 1,
}


@dataclass
class Fleet:
    fake_worker: FakeWorker
    fake_writer: FakeWriter
    worker: Worker
    writer: Writer
    proxies: list[Proxy]
    site: SiteConfig
    orchestrator: Orchestrator

    def step(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            self.fake_worker.tick()
            self.orchestrator.run_once()

    def drive(
        self, until: Callable[[], bool], max_rounds: int = 60, what: str = "condition"
    ) -> int:
        """Run whole orchestrator passes until `until()` holds; fail after max_rounds."""
        for n in range(1, max_rounds + 1):
            self.step()
            if until():
                return n
        raise AssertionError(f"{what} not reached after {max_rounds} rounds")

    def drive_to(self, mission: Mission, *statuses: str, max_rounds: int = 60) -> Mission:
        self.drive(
            lambda: Mission.objects.get(pk=mission.pk).status in statuses,
            max_rounds,
            f"mission {mission.pk} in {statuses}",
        )
        mission.refresh_from_db()
        return mission


def build_fleet(
    fake_worker: FakeWorker,
    fake_writer: FakeWriter,
    *,
    n_proxies: int = 4,
    items_per_job: int = 5,
    max_sessions: int = 2,
    overrides: dict[str, object] | None = None,
) -> Fleet:
    r = register_fleet(
        fake_worker,
        fake_writer,
        settings={**FAST_CONFIG, **(overrides or {})},
        proxies=n_proxies,
        items_per_job=items_per_job,
        max_sessions=max_sessions,
    )
    return Fleet(
        fake_worker,
        fake_writer,
        r.worker,
        r.writer,
        r.proxies,
        r.site,
        Orchestrator(name="test-orchestrator", use_notify=False),
    )
