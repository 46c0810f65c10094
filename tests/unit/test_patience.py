"""`tests.patience.Deadline`: a hang guard counted in the machine's time."""

from __future__ import annotations

import pytest

from tests import patience


def test_an_overloaded_machine_stretches_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 10.0, 20.0, 40.0])
    monkeypatch.setattr(patience.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(patience, "load_factor", lambda: 4.0)
    deadline = patience.Deadline(10)
    assert not deadline.expired()  # 10 s of wall clock at 4x load: 2.5 s counted
    assert not deadline.expired()  # 5 s
    assert deadline.expired()  # 10 s


def test_an_idle_machine_counts_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patience.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    assert patience.load_factor() == 1.0
