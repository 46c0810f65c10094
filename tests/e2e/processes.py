"""Run `manage.py` commands as real processes against the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import connection

from tests.patience import Deadline

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    s = connection.settings_dict
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or "5432"
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{s['NAME']}"


# The log file of each process spawned with one, by pid (for stop()'s failure message).
_LOGS: dict[int, Path] = {}


def spawn(*args: str, log: Path | None = None, **env: str) -> subprocess.Popen[bytes]:
    full_env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        # Same key as the test process: secrets it stored must decrypt in the child.
        "SECRET_KEY": settings.SECRET_KEY,
        "DEBUG": "0",
        "SECURE_SSL_REDIRECT": "0",
        # Production settings otherwise; but tests dial only loopback servers they started,
        # and the outbound policy refuses loopback in production unless told.
        "OUTBOUND_ALLOW_PRIVATE": "1",
        "LOG_LEVEL": "INFO",
        **env,
    }
    command = [sys.executable, str(ROOT / "manage.py"), *args]
    if log is None:
        return subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
    with open(log, "ab") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    _LOGS[proc.pid] = log
    return proc


def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.2) -> None:
    """Poll `condition` until true; `timeout` is a hang guard counted in the machine's
    time (`tests.patience`: it stretches while the machine is overloaded)."""
    deadline = Deadline(timeout)
    while not deadline.expired():
        if condition():
            return
        time.sleep(poll)
    if condition():
        return
    raise AssertionError(f"timed out after {timeout}s (load-adjusted) waiting for {what}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
    """SIGTERM, then the exit code. `timeout` is a hang guard counted in the machine's
    time (`tests.patience`: a process finishing its current tick on an overloaded
    machine is not hung); past it the process is killed and the failure shows the end
    of its log."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    deadline = Deadline(timeout)
    while proc.poll() is None and not deadline.expired():
        time.sleep(0.05)
    code = proc.poll()
    if code is not None:
        return code
    proc.kill()
    proc.wait()
    log = _LOGS.get(proc.pid)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else "(no log)"
    raise AssertionError(
        f"pid {proc.pid} still running {timeout}s (load-adjusted) after SIGTERM; its log:\n{tail}"
    )


def process_state(pid: int) -> str:
    """The one-letter state of a Linux process (``T``: stopped, ``Z``: zombie)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name is in parentheses and may itself contain spaces.
    return stat.rsplit(")", 1)[1].split()[0]


def pause(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGSTOP `proc` and wait until the kernel reports it stopped."""
    proc.send_signal(signal.SIGSTOP)
    wait_for(lambda: process_state(proc.pid) in ("T", "t"), timeout, f"pid {proc.pid} stopped")


def resume(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGCONT)
