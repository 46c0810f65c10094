"""Waits that stretch with the machine's load.

A test's wait (`wait_for(..., timeout=30)`) is a safety net against a hang, not a
timing assertion: on a loaded machine the processes under test get a fraction of a
core, and the same work takes longer. `Deadline` counts time at the rate the machine
gives it: a second of wall clock spent while the 1-minute load average is N times the
core count counts as 1/N s (never more than 1). `MC_TEST_PATIENCE` multiplies every
budget (e.g. 3 on a slow CI runner)."""

from __future__ import annotations

import os
import time

CORES = os.cpu_count() or 1
PATIENCE = float(os.environ.get("MC_TEST_PATIENCE", "1") or 1)


def load_factor() -> float:
    """How many times over the cores are asked for (≥ 1)."""
    try:
        return max(1.0, os.getloadavg()[0] / CORES)
    except OSError:  # no load average on this platform
        return 1.0


class Deadline:
    """`timeout_s` of the machine's time, counted from now."""

    def __init__(self, timeout_s: float) -> None:
        self.budget = timeout_s * PATIENCE
        self.spent = 0.0
        self._last = time.monotonic()

    def expired(self) -> bool:
        now = time.monotonic()
        self.spent += (now - self._last) / load_factor()
        self._last = now
        return self.spent >= self.budget
