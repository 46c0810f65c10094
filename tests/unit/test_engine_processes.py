"""`run_orchestrator --processes N`: how the managers are split, and each child's command."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from orchestrator.processes import child_command, partition
from orchestrator.runner import MANAGER_CLASSES

ALL = list(MANAGER_CLASSES)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 9])
def test_every_manager_runs_in_exactly_one_group_and_no_group_is_empty(n: int) -> None:
    groups = partition(ALL, n)
    assert len(groups) == min(n, len(ALL))
    assert all(groups)
    assert sorted(k for g in groups for k in g) == sorted(ALL)


def test_two_processes_put_the_workers_manager_apart_from_sessions_and_missions() -> None:
    # The workers manager (dispatch and results lanes) weighs as much as the sessions and
    # missions managers together: two cores, one each.
    groups = partition(ALL, 2)
    with_workers = next(g for g in groups if "workers" in g)
    assert "sessions" not in with_workers and "missions" not in with_workers


def test_a_group_keeps_the_order_the_managers_were_given_in() -> None:
    assert partition(["missions", "sessions"], 1) == [["missions", "sessions"]]


def test_a_child_runs_one_process_of_its_group_and_takes_the_options_on() -> None:
    command = child_command(
        ["sessions", "missions"], {"name": "eng", "no_notify": True, "max_seconds": 5.0}, 2
    )
    assert command[:4] == [sys.executable, "-m", "django", "run_orchestrator"]
    args = command[4:]
    # A child never splits again, whatever ORCHESTRATOR_PROCESSES says.
    assert args[args.index("--processes") + 1] == "1"
    assert args[args.index("--managers") + 1] == "sessions,missions"
    assert args[args.index("--name") + 1] == "eng-2"  # instance names stay unique
    assert "--no-notify" in args
    assert args[args.index("--max-seconds") + 1] == "5.0"


def test_a_child_without_a_name_gets_the_default_one() -> None:
    assert "--name" not in child_command(["workers"], {"name": ""}, 1)


def test_zero_processes_is_refused() -> None:
    with pytest.raises(CommandError, match="at least 1"):
        call_command("run_orchestrator", "--processes", "0", "--once")


def test_orchestrator_processes_setting_splits_the_engine(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.management.commands import run_orchestrator

    seen: list[list[list[str]]] = []
    monkeypatch.setattr(
        run_orchestrator.Command, "supervise", lambda self, groups, options: seen.append(groups)
    )
    settings.ORCHESTRATOR_PROCESSES = 2
    call_command("run_orchestrator")
    assert len(seen) == 1 and len(seen[0]) == 2
