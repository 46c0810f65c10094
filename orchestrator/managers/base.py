"""What the three managers share: identity, config snapshot, clients and batch lookups.

Mission and session transitions live in `orchestrator.transitions`, leases in
`orchestrator.leases` (both re-exported here for the managers)."""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from orchestrator.clients import breaker
from orchestrator.clients.base import ServiceError
from orchestrator.clients.worker import WorkerClient
from orchestrator.clients.writer import WriterClient
from orchestrator.leases import (  # noqa: F401  (re-exported for the managers)
    leases_q,
    release_many,
    update_in_id_order,
)
from orchestrator.models import Mission
from orchestrator.transitions import (  # noqa: F401  (re-exported for the managers)
    LIVE_NOT_CLOSING,
    Move,
    close_mission_sessions,
    close_sessions_of,
    end_session,
    fail_attempt,
    lock_live_sessions,
    retry_policy,
    transition_many,
)
from registry import config
from registry.config import Config
from registry.models import SiteConfig, Worker, Writer

logger = logging.getLogger("orchestrator")


# Counts that say what a tick looked at, not work it moved forward: they are reported
# but do not make the loop go again at once.
OBSERVATIONS = frozenset({"polled", "checked"})


@dataclass
class TickResult:
    """What one tick did, by action name; `did_work` tells the loop to drain again."""

    counts: dict[str, int] = field(default_factory=dict)
    # Seconds until this manager should tick again, if sooner than its interval.
    follow_up_s: float | None = None

    def add(self, key: str, n: int = 1) -> None:
        if n:
            self.counts[key] = self.counts.get(key, 0) + n

    @property
    def did_work(self) -> bool:
        return any(n for key, n in self.counts.items() if key not in OBSERVATIONS)


class BaseManager:
    name = "base"

    def __init__(
        self,
        owner: str,
        *,
        worker_client: Callable[[Worker, Config], WorkerClient] | None = None,
        writer_client: Callable[[Writer, Config], WriterClient] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.owner = owner
        self._worker_client = worker_client or WorkerClient.for_worker
        self._writer_client = writer_client or WriterClient.for_writer
        self.rng = rng or random.Random()
        # Set by the orchestrator's loop, which ticks a manager whenever an event wakes
        # it: the periodic parts (polling workers, health checks) then run at their
        # interval, not on every tick. A tick called on its own does everything.
        self.throttle = False
        self._last_run: dict[str, float] = {}

    def since(self, name: str) -> float:
        """Seconds since the periodic part `name` last ran (infinite if never)."""
        return time.monotonic() - self._last_run.get(name, -math.inf)

    def periodic(self, name: str, every_s: float) -> bool:
        """Whether the periodic part `name` is due (and, if so, it counts as run now)."""
        if self.throttle and self.since(name) < every_s:
            return False
        self._last_run[name] = time.monotonic()
        return True

    # -- clients and breakers

    def worker_client(self, worker: Worker, cfg: Config) -> WorkerClient:
        return self._worker_client(worker, cfg)

    def writer_client(self, writer: Writer, cfg: Config) -> WriterClient:
        return self._writer_client(writer, cfg)

    def service_failed(
        self, service: Any, exc: ServiceError, now: dt.datetime, cfg: Config
    ) -> None:
        """An infrastructure fault: count it against the service, never a mission."""
        breaker.record_failure(
            service,
            now,
            f"{exc.code}: {exc.message}",
            threshold=cfg.circuit_failure_threshold,
            open_s=cfg.circuit_open_s,
        )

    def tick(self) -> TickResult:
        raise NotImplementedError

    def lanes(self) -> dict[str, Callable[[], TickResult]]:
        """The parts of the tick that the orchestrator may run each on a loop and thread
        of its own, by name ("" is the main lane). Parts qualify when nothing between
        them relies on running one at a time — as between two orchestrator processes:
        leases, compare-and-set transitions, locks in one order. By default the whole
        tick is one lane."""
        return {"": self.tick}

    @staticmethod
    def load() -> tuple[dt.datetime, Config]:
        cfg = getattr(_tick_config, "cfg", None)
        return timezone.now(), cfg if cfg is not None else config.load()


# The configuration the orchestrator's loop has just read for this thread's next tick
# (`ticking_with`): the tick uses it instead of reading the same rows again.
_tick_config = threading.local()


@contextmanager
def ticking_with(cfg: Config) -> Iterator[None]:
    """Within the block, `BaseManager.load()` on this thread returns `cfg` (read by the
    caller just before the tick) rather than a fresh read."""
    _tick_config.cfg = cfg
    try:
        yield
    finally:
        _tick_config.cfg = None


def writer_for(mission: Mission) -> Writer | None:
    if mission.writer_id:
        return Writer.objects.filter(pk=mission.writer_id, enabled=True).first()
    return Writer.default()


def site_configs(domains: set[str]) -> dict[str, SiteConfig]:
    """`SiteConfig.for_domain` of every domain of a batch in one query."""
    return SiteConfig.for_domains(domains)


def writers_for(missions: list[Mission]) -> dict[int, Writer | None]:
    """`writer_for` of every mission of a batch, in one query (mission id -> writer)."""
    wanted = {m.writer_id for m in missions if m.writer_id}
    rows = list(
        (Writer.objects.filter(pk__in=wanted, enabled=True) | Writer.default_q()).order_by("id")
    )
    by_id = {w.pk: w for w in rows}
    default = next((w for w in rows if w.is_default), None)
    return {m.pk: by_id.get(m.writer_id) if m.writer_id else default for m in missions}
