"""A small HTTP forward proxy (plain HTTP and CONNECT tunnels) for local demos and
tests: `make demo-proxies` runs a few on loopback so proxy rotation can be seen
working, and the end-to-end tests assert the traffic really went through one."""

from __future__ import annotations

import base64
import http.client
import logging
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
}


class ForwardProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, username: str = "", password: str = ""
    ) -> None:
        super().__init__((host, port), _Handler)
        self.username, self.password = username, password
        self.lock = threading.Lock()
        self.requests: list[str] = []  # "GET http://host/path" or "CONNECT host:443"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def record(self, line: str) -> None:
        with self.lock:
            self.requests.append(line)

    def authorized(self, header: str | None) -> bool:
        if not self.username:
            return True
        if not header or not header.lower().startswith("basic "):
            return False
        try:
            user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return (user, pw) == (self.username, self.password)

    def start(self) -> ForwardProxy:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread:
            self._thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    server: ForwardProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("proxy %s", format % args)

    def _deny(self) -> bool:
        if self.server.authorized(self.headers.get("Proxy-Authorization")):
            return False
        self.send_response(407)
        self.send_header("Proxy-Authenticate", 'Basic realm="proxy"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def do_CONNECT(self) -> None:
        if self._deny():
            return
        self.server.record(f"CONNECT {self.path}")
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=10)
        except OSError:
            self.send_error(502)
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        conns = [self.connection, upstream]
        try:
            while True:
                readable, _, broken = select.select(conns, [], conns, 30)
                if broken or not readable:
                    break
                for conn in readable:
                    data = conn.recv(65536)
                    if not data:
                        return
                    (upstream if conn is self.connection else self.connection).sendall(data)
        finally:
            upstream.close()
            self.close_connection = True

    def _forward(self) -> None:
        if self._deny():
            return
        target = urlsplit(self.path)
        if target.scheme != "http" or not target.hostname:
            self.send_error(400, "absolute http URL expected")
            return
        self.server.record(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        path = target.path or "/"
        if target.query:
            path += "?" + target.query
        conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
        try:
            conn.request(self.command, path, body=body, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        except OSError:
            self.send_error(502)
            return
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _forward
