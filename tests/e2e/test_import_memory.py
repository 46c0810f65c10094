"""Issue #18 point 5, measured on a real gunicorn worker (production settings, SQLite):
the peak RSS (VmHWM) a proxy import adds to the worker, for a 100 MB body announced by
Content-Length (refused with the JSON 413 before it is read), a 100 MB chunked body
(nothing read), and the largest kind of import that is accepted (CSV and JSON bodies of
100,000 entries, read as streams). Run with -s to see the figures."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("processes")]
ROOT = Path(__file__).resolve().parents[2]
MB = 1024 * 1024
ROWS = int(os.environ.get("MC_IMPORT_ROWS", "100000"))
# The bound asserted (not a time): the issue saw +888 MB for a 105 MB upload.
MAX_GROWTH_MB = 150


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "mission_control.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "SECRETS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "LOCALNODE_API_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }


def _hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _request(port: int, token: str, body: Iterator[bytes], headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.putrequest("POST", "/api/proxies/import/")
    for name, value in {**headers, "Authorization": f"Token {token}"}.items():
        conn.putheader(name, value)
    conn.endheaders()
    chunked = headers.get("Transfer-Encoding") == "chunked"
    try:
        for piece in body:
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # answered and closed before the body was read: what a refusal should do
    try:
        return conn.getresponse().status
    except (ConnectionResetError, http.client.RemoteDisconnected):
        return 0
    finally:
        conn.close()


def _filler(size: int) -> Iterator[bytes]:
    piece = b"x" * MB
    for _ in range(size // MB):
        yield piece


def _csv_rows() -> Iterator[bytes]:
    yield b"id,type,host,port,username,password,country,provider,max_sessions\n"
    for i in range(ROWS):
        yield (
            f"px-{i:07d},datacenter,203.0.{i // 250 % 250}.{i % 250},8000,"
            f"usuario-{i},senha-{i:012d},BR,provedor-de-teste,2\n"
        ).encode()


def _json_rows() -> Iterator[bytes]:
    yield b"["
    for i in range(ROWS):
        entry = {
            "id": f"pj-{i:07d}",
            "type": "residential",
            "host": f"198.51.{i // 250 % 250}.{i % 250}",
            "port": 8000,
            "username": f"usuario-{i}",
            "password": f"senha-{i:012d}",
            "country": "BR",
        }
        yield (b"," if i else b"") + json.dumps(entry).encode()
    yield b"]"


def _batched(pieces: Iterator[bytes], size: int = 256 * 1024) -> Iterator[bytes]:
    buf = bytearray()
    for piece in pieces:
        buf += piece
        if len(buf) >= size:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


def _sized(pieces: Iterator[bytes], content_type: str) -> tuple[Iterator[bytes], dict[str, str]]:
    body = b"".join(pieces)
    headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
    return _batched(iter([body])), headers


def test_imports_keep_the_worker_small(tmp_path: Path) -> None:
    env = _env(tmp_path)
    py = sys.executable
    subprocess.run(
        [py, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    script = (
        "from tests import factories; from registry import tokens; "
        "print(tokens.issue(factories.UserFactory(username='adm', role='admin'))[1])"
    )
    out = subprocess.run(
        [py, "manage.py", "shell", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    token = out.stdout.strip().splitlines()[-1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    gunicorn = shutil.which("gunicorn", path=str(Path(py).parent))
    assert gunicorn
    master = subprocess.Popen(
        [
            gunicorn,
            "mission_control.wsgi:application",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "1",
            "-t",
            "600",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        # Warm up (imports, first queries), then measure each case's peak growth.
        _request(
            port, token, iter([b"[]"]), {"Content-Type": "application/json", "Content-Length": "2"}
        )
        worker = _children(master.pid)[0]
        figures = {}
        cases = {
            "100 MB, Content-Length": (
                _filler(100 * MB),
                {"Content-Type": "text/csv", "Content-Length": str(100 * MB)},
            ),
            "100 MB, chunked": (
                _filler(100 * MB),
                {"Content-Type": "text/csv", "Transfer-Encoding": "chunked"},
            ),
            f"CSV, {ROWS} entries": _sized(_csv_rows(), "text/csv"),
            f"JSON, {ROWS} entries": _sized(_json_rows(), "application/json"),
        }
        for name, (body, headers) in cases.items():
            before = _hwm_kb(worker)
            status = _request(port, token, body, headers)
            figures[name] = (status, (_hwm_kb(worker) - before) / 1024)
            print(name, figures[name], flush=True)
        print("\nimport (status, peak RSS growth MB):", figures)
        assert [status for status, _ in figures.values()] == [413, 400, 200, 200], figures
        for name, (_status, growth) in figures.items():
            assert growth < MAX_GROWTH_MB, (name, growth)
    finally:
        master.terminate()
        master.wait(timeout=60)
