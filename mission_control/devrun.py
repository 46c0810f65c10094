"""`make run`'s process manager: starts each line of a Procfile, prefixes its output,
and on Ctrl-C (or SIGTERM) asks every process to stop the way Ctrl-C would, waits up to
`DEVRUN_GRACE_S` (20 s) for them, and exits 0 when they all stopped.

It takes the terminal's foreground for itself, so Ctrl-C reaches it but not `make`
(which would report an interrupt as `Error 130`), and starts each process in its own
process group, so each gets exactly one SIGINT — forwarded from here — however it was
interrupted. Standard library only: it runs before Django is set up.

    python -m mission_control.devrun Procfile.dev
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

KILL_AFTER_S = 3.0


@dataclass
class Child:
    name: str
    command: str
    proc: subprocess.Popen[str] | None = None
    reader: threading.Thread | None = field(default=None, repr=False)


def read_procfile(path: Path) -> list[Child]:
    children = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and ":" in line:
            name, command = line.split(":", 1)
            children.append(Child(name.strip(), command.strip()))
    if not children:
        raise SystemExit(f"devrun: no processes in {path}")
    return children


def take_terminal() -> Callable[[], None]:
    """Become the terminal's foreground process group (Ctrl-C then reaches this process,
    not `make`); returns the function that gives the terminal back."""
    try:
        fd = sys.stdin.fileno()
        if not os.isatty(fd):
            return lambda: None
        previous = os.tcgetpgrp(fd)
        os.setpgid(0, 0)
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # a background group may not take it
        os.tcsetpgrp(fd, os.getpgrp())
    except (OSError, ValueError):
        return lambda: None

    def give_back() -> None:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(fd, previous)

    return give_back


class Runner:
    def __init__(self, children: list[Child], grace_s: float, out: IO[str]) -> None:
        self.children = children
        self.grace_s = grace_s
        self.out = out
        self.width = max(len(c.name) for c in children)
        self.lock = threading.Lock()
        self.stop_requested = threading.Event()

    def say(self, name: str, text: str) -> None:
        with self.lock:
            self.out.write(f"{time.strftime('%H:%M:%S')} {name:<{self.width}} | {text}\n")
            self.out.flush()

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for child in self.children:
            child.proc = subprocess.Popen(
                child.command,
                shell=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                env=env,
                process_group=0,
            )
            child.reader = threading.Thread(target=self._pump, args=(child,), daemon=True)
            child.reader.start()
            self.say("devrun", f"started {child.name} (pid {child.proc.pid}): {child.command}")

    def _pump(self, child: Child) -> None:
        assert child.proc is not None and child.proc.stdout is not None
        for line in child.proc.stdout:
            self.say(child.name, line.rstrip("\n"))

    def running(self) -> list[Child]:
        return [c for c in self.children if c.proc is not None and c.proc.poll() is None]

    def wait_for_stop_or_exit(self) -> Child | None:
        """Until a stop is requested (None) or a process ends on its own (that one)."""
        while not self.stop_requested.wait(0.2):
            for child in self.children:
                if child.proc is not None and child.proc.poll() is not None:
                    return child
        return None

    def signal_all(self, sig: int) -> None:
        for child in self.running():
            assert child.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, sig)

    def shutdown(self) -> list[str]:
        """Interrupt every process, wait the grace period; returns the ones killed."""
        self.signal_all(signal.SIGINT)
        deadline = time.monotonic() + self.grace_s
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        stragglers = [c.name for c in self.running()]
        if stragglers:
            self.signal_all(signal.SIGTERM)
            deadline = time.monotonic() + KILL_AFTER_S
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.signal_all(signal.SIGKILL)
        for child in self.children:
            if child.proc is not None:
                child.proc.wait()
            if child.reader is not None:
                child.reader.join(2)
        return stragglers


def main(argv: list[str]) -> int:
    procfile = Path(argv[0] if argv else "Procfile.dev")
    runner = Runner(
        read_procfile(procfile), float(os.environ.get("DEVRUN_GRACE_S", "20")), sys.stdout
    )

    def request_stop(signum: int, frame: FrameType | None) -> None:
        runner.stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    give_back = take_terminal()
    try:
        runner.start()
        ended = runner.wait_for_stop_or_exit()
        if ended is not None:
            assert ended.proc is not None
            runner.say("devrun", f"{ended.name} exited ({ended.proc.returncode}): stopping all")
        else:
            runner.say("devrun", "stopping (waiting for every process to finish its work)")
        stragglers = runner.shutdown()
    finally:
        give_back()
    if stragglers:
        runner.say("devrun", f"did not stop within {runner.grace_s:g} s: {', '.join(stragglers)}")
        return 1
    if ended is not None:
        return 1
    runner.say("devrun", "all processes stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
