"""`manage.py demo_proxies` (`make demo-proxies`) as a real process: it serves working
forward proxies on loopback, registers them, and on SIGTERM stops them, disables
their rows and exits 0."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection

from registry.models import Proxy
from tests.e2e.processes import spawn, stop, wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("processes"),
]


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"pagina {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def two_free_ports() -> int:
    """A port p with p and p + 1 both free right now."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return int(port)
    raise AssertionError("no two consecutive free ports")


def test_demo_proxies_serve_register_and_stop_cleanly(origin: str, tmp_path: Path) -> None:
    port = two_free_ports()
    log = tmp_path / "demo_proxies.log"
    proc = spawn("demo_proxies", "--count", "2", "--first-port", str(port), log=log)
    try:
        wait_for(lambda: "Proxies running" in log.read_text(), 30, "the proxies to start")
        rows = list(Proxy.objects.filter(external_id__startswith="demo-px-").order_by("port"))
        assert [(p.external_id, p.port, p.enabled) for p in rows] == [
            ("demo-px-1", port, True),
            ("demo-px-2", port + 1, True),
        ]
        # The password is stored encrypted and decrypts with the shared key.
        assert rows[0].password == "demo-pass"
        with connection.cursor() as cursor:
            cursor.execute("SELECT password FROM registry_proxy WHERE id = %s", [rows[0].pk])
            assert "demo-pass" not in cursor.fetchone()[0]

        # Each registered proxy really forwards, with its credentials and only with them.
        for row in rows:
            with httpx.Client(proxy=row.url(), timeout=10, trust_env=False) as client:
                answer = client.get(f"{origin}/p/{row.port}")
            assert (answer.status_code, answer.text) == (200, f"pagina /p/{row.port}")
        anonymous = f"http://127.0.0.1:{port}"
        with httpx.Client(proxy=anonymous, timeout=10, trust_env=False) as client:
            assert client.get(f"{origin}/x").status_code == 407
    finally:
        code = stop(proc, timeout=20)

    assert code == 0, log.read_text()[-2000:]
    assert not Proxy.objects.filter(external_id__startswith="demo-px-", enabled=True).exists()
    # The refused anonymous request is not counted as forwarded.
    assert "Stopped. 1 requests, 1 requests" in log.read_text()
