"""Capped exponential backoff: the one home of its arithmetic.

Pure. `orchestrator.states.RetryPolicy` builds its jittered delays on it; the HTTP
clients (which import no other engine module) and the built-in node (which imports
only `mission_control`) call it directly.
"""

from __future__ import annotations


def capped_exponential_s(attempt: int, base_s: float, cap_s: float) -> float:
    """The delay after attempt `attempt` (1-based; 0 counts as the first): `base_s`,
    doubling with each attempt, never above `cap_s`."""
    return float(min(cap_s, base_s * (2 ** max(0, attempt - 1))))
