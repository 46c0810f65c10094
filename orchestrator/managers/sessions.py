"""SessionManager (every 5 s): opens requested sessions (`session_open`), polls each
worker once and reconciles its sessions: stuck, disconnected, failed (`session_poll`),
retires and replaces sessions on blocked proxies, closes finished ones
(`session_close`)."""

from __future__ import annotations

from orchestrator import allocation, proxy_health
from orchestrator.leases import reclaim_orphaned
from orchestrator.managers.base import TickResult
from orchestrator.managers.session_close import SessionClosing
from orchestrator.managers.session_open import SessionOpening
from orchestrator.managers.session_poll import SessionPolling

# How often the SessionManager frees the leases of gone orchestrator instances.
RECLAIM_EVERY_S = 5.0


class SessionManager(SessionOpening, SessionPolling, SessionClosing):
    """Opening (`session_open`), polling (`session_poll`), closing (`session_close`):
    one manager, one tick, three modules."""

    name = "sessions"

    def tick(self) -> TickResult:
        now, cfg = self.load()
        result = TickResult()
        if self.periodic("reclaim", RECLAIM_EVERY_S):
            result.add("reclaimed", reclaim_orphaned(now, cfg.heartbeat_stale_after_s))
        result.add("closed", self.close_sessions(now, cfg))
        if not cfg.paused:
            result.add("opened", self.open_requested(now, cfg))
        if self.poll_due(cfg):
            polled, ended = self.poll_workers(now, cfg)
            result.add("polled", polled)
            result.add("ended", ended)
        result.add("retired", proxy_health.retire_sessions(now))
        result.add("marked", proxy_health.mark_busy_sessions(now))
        if not cfg.paused:
            result.add("replenished", allocation.replenish_sessions(self.owner, now, cfg))
        return result


__all__ = ["SessionManager"]
