"""Long-running processes freeze what start-up created (`mission_control/startup.py`):
a full garbage collection then skips it, instead of stopping every thread for ~50 ms."""

from __future__ import annotations

import gc
import importlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command

from mission_control import startup


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_start_up_objects_are_frozen_and_a_full_collection_skips_them() -> None:
    def full_collection_visits() -> int:
        seen: list[int] = []

        def record(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                seen.append(len(gc.get_objects(generation=2)))

        gc.callbacks.append(record)
        try:
            gc.collect(2)
        finally:
            gc.callbacks.remove(record)
        return seen[0]

    before = full_collection_visits()
    frozen = startup.freeze_startup_objects()

    # A frozen object still dies when its last reference goes (another thread of the
    # test process may drop one meanwhile), so the count can only have shrunk since.
    assert frozen > 10_000
    assert frozen - 100 < gc.get_freeze_count() <= frozen
    assert full_collection_visits() < before // 10
    # The URLconf came first: the API's views and serializers are among the frozen.
    assert "orchestrator.serializers" in sys.modules


@pytest.fixture
def freezes(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    calls: list[float] = []

    def freeze() -> int:
        calls.append(time.monotonic())
        return 0

    monkeypatch.setattr(startup, "freeze_startup_objects", freeze)
    return calls


@pytest.mark.parametrize("module", ["mission_control.wsgi", "mission_control.asgi"])
def test_the_web_server_entry_points_freeze_after_django_is_set_up(
    module: str, freezes: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, module, raising=False)
    loaded = importlib.import_module(module)
    assert loaded.application is not None
    assert len(freezes) == 1


def test_the_engine_freezes_before_it_runs(
    freezes: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.management.commands import run_orchestrator

    started: list[float] = []

    class Engine:
        name = "frozen"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def install_signal_handlers(self) -> None:
            pass

        def run(self, **kwargs: Any) -> None:
            started.append(time.monotonic())

    monkeypatch.setattr(run_orchestrator, "Orchestrator", Engine)
    # The command sets the engine's connection options on PostgreSQL: not for later tests.
    db = settings.DATABASES["default"]
    monkeypatch.setitem(db, "OPTIONS", dict(db.get("OPTIONS", {})))
    call_command("run_orchestrator", "--processes", "1")

    assert len(freezes) == 1 and len(started) == 1
    assert freezes[0] <= started[0]
