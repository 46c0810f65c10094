"""EtlManager (every `etl_tick_s`, 5 s by default): sends the ETL outbox
(orchestrator/etl_outbox.py); a no-op when no ETL is configured."""

from __future__ import annotations

from orchestrator import etl_outbox
from orchestrator.managers.base import BaseManager, TickResult


class EtlManager(BaseManager):
    name = "etl"

    def tick(self) -> TickResult:
        now, cfg = self.load()
        result = TickResult()
        for name, n in etl_outbox.sync(now, cfg, owner=self.owner, rng=self.rng).items():
            if name != "failed":
                result.add(name, n)
        return result


__all__ = ["EtlManager"]
