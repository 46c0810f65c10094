"""`run_orchestrator --processes N`: the managers split over N engine processes.

One Python process runs every manager lane under one GIL; on a machine with several
cores the engine is then bound by that process's CPU, not by the database or the
services (docs/performance.md). The supervisor here starts N ordinary
`run_orchestrator --managers <group>` processes, one group of managers each, and
stays out of the work: it opens no database connection. The children coordinate as
any two orchestrators do (leases, compare-and-set transitions, locks in one order).

- A signal (SIGTERM, SIGINT) is passed on to every child: each finishes its tick and
  exits; a second signal makes them exit at once. The children have a session of their
  own, so a terminal's Ctrl-C reaches them once, through the supervisor, and on Linux
  they get SIGTERM if the supervisor dies (even of SIGKILL): none outlives it.
- A child that exits on its own takes the others down (SIGTERM) and the supervisor
  exits with its code, so the service manager restarts the whole engine rather than
  leave it running without a manager.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger("orchestrator")

# Relative CPU of each manager in a busy engine (bench.pipeline, split runs): the
# workers manager (dispatch and results lanes) is the heaviest, the ETL outbox light.
WEIGHTS = {"workers": 2.4, "sessions": 1.4, "missions": 1.0, "etl": 0.1}
POLL_S = 0.5
PR_SET_PDEATHSIG = 1  # prctl(2)


def partition(managers: Sequence[str], n: int) -> list[list[str]]:
    """`managers` in at most `n` groups of similar weight (heaviest first, each into the
    lightest group so far); every manager in exactly one group, none empty."""
    n = max(1, min(n, len(managers)))
    groups: list[list[str]] = [[] for _ in range(n)]
    loads = [0.0] * n
    for kind in sorted(managers, key=lambda k: (-WEIGHTS.get(k, 1.0), k)):
        lightest = loads.index(min(loads))
        groups[lightest].append(kind)
        loads[lightest] += WEIGHTS.get(kind, 1.0)
    order = {kind: i for i, kind in enumerate(managers)}
    return [sorted(group, key=order.__getitem__) for group in groups]


def child_command(group: Sequence[str], options: dict[str, Any], index: int) -> list[str]:
    """The `run_orchestrator` command line of the child running `group`."""
    command = [sys.executable, "-m", "django", "run_orchestrator", "--processes", "1"]
    command += ["--managers", ",".join(group)]
    if options.get("name"):
        command += ["--name", f"{options['name']}-{index}"]
    if options.get("no_notify"):
        command.append("--no-notify")
    if options.get("max_seconds") is not None:
        command += ["--max-seconds", str(options["max_seconds"])]
    return command


def _die_with_parent() -> None:
    """In a child, before it runs: SIGTERM when its parent dies (Linux; elsewhere a
    no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Starts the children, passes signals on, and ends with them."""

    def __init__(self, commands: list[list[str]], *, cwd: Path) -> None:
        self.commands = commands
        self.cwd = cwd
        self.children: list[subprocess.Popen[bytes]] = []
        self.stopping = threading.Event()

    def start(self) -> None:
        # `python -m django` in the project's directory: it is on the child's sys.path,
        # and DJANGO_SETTINGS_MODULE comes with the environment.
        for command in self.commands:
            child = subprocess.Popen(
                command,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # the supervisor spawns from one thread
            )
            self.children.append(child)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping.set()
        self.signal_all(signum)

    def signal_all(self, signum: int) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signum)

    def wait(self) -> int:
        """Until every child has exited; the exit code is the first failing child's (0
        when all stopped cleanly after a signal)."""
        failed = 0
        while any(child.poll() is None for child in self.children):
            ended = [c for c in self.children if c.returncode is not None]
            if ended and not self.stopping.is_set():
                failed = self._one_ended(ended[0])
            time.sleep(POLL_S)  # a signal runs its handler and the loop goes on
        codes = [child.returncode for child in self.children]
        return failed or next((code for code in codes if code), 0)

    def _one_ended(self, child: subprocess.Popen[bytes]) -> int:
        """A child exited unasked: the others stop too. Its code is the engine's (0 when
        it ended cleanly, as at `--max-seconds`)."""
        level = logging.ERROR if child.returncode else logging.INFO
        logger.log(
            level,
            "orchestrator process %s exited (%s): stopping the others",
            child.pid,
            child.returncode,
        )
        self.stopping.set()
        self.signal_all(signal.SIGTERM)
        return child.returncode or 0
