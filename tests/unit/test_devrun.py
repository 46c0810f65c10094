"""`make run`'s process manager: prefixed output, one SIGINT per process on a stop,
exit 0 when every process stopped within the grace period, the straggler named if not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mission_control.devrun import read_procfile
from tests.patience import PATIENCE, load_factor

ROOT = Path(__file__).resolve().parents[2]

# Counts the SIGINTs it gets, stops on the first after a short clean-up, says so.
POLITE = (
    "import signal, sys, time\n"
    "seen = []\n"
    "signal.signal(signal.SIGINT, lambda *a: seen.append(1))\n"
    "print('ready', flush=True)\n"
    "open(__file__ + '.ready', 'w').close()\n"
    "while not seen: time.sleep(0.05)\n"
    "time.sleep(0.3)\n"
    "print(f'stopped cleanly after {len(seen)} SIGINT', flush=True)\n"
)
STUBBORN = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(600)\n"


def start(tmp_path: Path, lines: dict[str, str], grace_s: str = "20") -> subprocess.Popen[str]:
    procfile = tmp_path / "Procfile"
    for name, code in lines.items():
        (tmp_path / f"{name}.py").write_text(code)
    procfile.write_text("".join(f"{n}: {sys.executable} {tmp_path / n}.py\n" for n in lines))
    return subprocess.Popen(
        [sys.executable, "-m", "mission_control.devrun", str(procfile)],
        cwd=ROOT,
        env={**os.environ, "DEVRUN_GRACE_S": grace_s},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_ready(proc: subprocess.Popen[str], count: int) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    while sum(line.endswith("| ready\n") for line in lines) < count:
        line = proc.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    return lines


def test_it_reads_a_procfile(tmp_path: Path) -> None:
    (tmp_path / "P").write_text("# dev\nweb: python -m http.server ${PORT:-8000}\n\nq: run: it\n")
    assert [(c.name, c.command) for c in read_procfile(tmp_path / "P")] == [
        ("web", "python -m http.server ${PORT:-8000}"),
        ("q", "run: it"),
    ]


def test_an_interrupt_stops_every_process_once_and_exits_0(tmp_path: Path) -> None:
    proc = start(tmp_path, {"web": POLITE, "qcluster": POLITE})
    lines = wait_ready(proc, 2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate()
    out = "".join(lines) + out
    assert proc.returncode == 0, out
    assert out.count("stopped cleanly after 1 SIGINT") == 2, out
    assert "web      | stopped cleanly" in out
    assert "all processes stopped" in out
    assert "SIGKILL" not in out and "did not stop" not in out


def test_a_process_that_ignores_the_interrupt_is_named_and_the_exit_is_1(
    tmp_path: Path,
) -> None:
    # The grace is what the polite process needs to stop (0.3 s of clean-up idle): it
    # stretches with the machine's load (tests.patience) so that only `stuck` is late.
    grace_s = round(2 * load_factor() * PATIENCE, 1)
    proc = start(tmp_path, {"web": POLITE, "stuck": STUBBORN}, grace_s=str(grace_s))
    wait_ready(proc, 2)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate()
    assert proc.returncode == 1, out
    assert f"did not stop within {grace_s:g} s: stuck\n" in out
    assert time.monotonic() - started >= grace_s


def test_a_process_that_exits_on_its_own_stops_the_others(tmp_path: Path) -> None:
    crash = (
        "import os, time\n"
        f"while not os.path.exists({str(tmp_path / 'web.py.ready')!r}): time.sleep(0.05)\n"
        "raise SystemExit(3)\n"
    )
    proc = start(tmp_path, {"web": POLITE, "crash": crash})
    out, _ = proc.communicate()
    assert proc.returncode == 1, out
    assert "crash exited (3): stopping all" in out
    assert "stopped cleanly after 1 SIGINT" in out
