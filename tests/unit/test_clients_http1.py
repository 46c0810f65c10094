"""clients.http1, the engine's keep-alive path to plain-http services, against real
loopback servers that answer byte by byte what each case needs: reuse, a connection
the server closed while idle, refused, no answer, a cut body, chunked and compressed
bodies, a compression bomb, timeouts, query and path encoding, and where httpx keeps
the calls (https, a proxy in the environment, an injected client)."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import itertools
import json
import socket
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from orchestrator.clients import http1
from orchestrator.clients.base import BaseClient, ClientSettings, ServiceError

FAST = ClientSettings(
    connect_timeout=2, read_timeout=5, deadline=10, max_attempts=2, backoff_base=0.001
)


@dataclass
class Request:
    line: str
    headers: dict[str, str]
    body: bytes


# An answer: the raw bytes to send, then whether to close the connection after them.
Answer = tuple[bytes, bool]


def answer(
    body: bytes | dict[str, object] = b"{}",
    *,
    status: str = "200 OK",
    headers: dict[str, str] | None = None,
    close: bool = False,
) -> Answer:
    payload = json.dumps(body).encode() if isinstance(body, dict) else body
    head = {"Content-Type": "application/json", "Content-Length": str(len(payload))}
    head.update(headers or {})
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    return f"HTTP/1.1 {status}\r\n{lines}\r\n".encode() + payload, close


@dataclass
class Server:
    """HTTP/1.1 over a raw socket: each request is handed to `respond`, which returns
    the bytes to send (or None: send nothing and hold the connection)."""

    respond: Callable[[Request], Answer | None]
    requests: list[Request] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.closed = threading.Semaphore(0)  # released as each connection ends here
        self.stop = threading.Event()
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def _accept(self) -> None:
        self.listener.settimeout(0.05)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self.open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            self._requests(conn, reader)
        self.closed.release()

    def _requests(self, conn: socket.socket, reader: Any) -> None:
        while not self.stop.is_set():
            try:
                line = reader.readline()
            except OSError:
                break
            if not line:
                break
            headers: dict[str, str] = {}
            while (raw := reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = raw.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = reader.read(int(headers.get("content-length", 0)))
            request = Request(line.decode("latin-1").strip(), headers, body)
            self.requests.append(request)
            reply = self.respond(request)
            if reply is None:
                self.stop.wait()  # hold the connection, answer nothing
                return
            data, close = reply
            conn.sendall(data)
            if close:
                return

    def close(self) -> None:
        self.stop.set()
        self.acceptor.join()
        self.listener.close()
        for conn in self.open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        pool = http1.pool_for(self.url)
        if pool is not None:
            pool.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(respond: Callable[[Request], Answer | None]) -> Server:
        servers.append(Server(respond))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def client(server: Server, settings: ClientSettings = FAST) -> BaseClient:
    c = BaseClient(server.url, "key-123", settings)
    assert c._fast is not None, "a plain-http service on the shared pool takes http1"
    return c


def test_calls_to_a_service_reuse_one_kept_alive_connection(serve) -> None:
    count = itertools.count(1)
    server = serve(lambda r: answer({"n": next(count)}))
    c = client(server)
    assert [c._request("GET", "/health", idempotent=True) for _ in range(3)] == [
        {"n": 1},
        {"n": 2},
        {"n": 3},
    ]
    assert server.connections == 1


def test_the_request_carries_what_httpx_would_send(serve) -> None:
    server = serve(lambda r: answer({"ok": True}))
    c = client(server)
    c._call(
        "POST",
        "/sessions/s 1/jobs",
        json={"urls": ["https://loja.example/ç"]},
        params={"cursor": "a b&c", "limit": 50, "skip": None},
        idempotent=False,
        idempotency_key="idem-1",
    )
    sent = server.requests[0]
    expected = httpx.URL(server.url + "/sessions/s 1/jobs", params={"cursor": "a b&c", "limit": 50})
    assert sent.line == f"POST {expected.raw_path.decode()} HTTP/1.1"
    assert sent.headers["host"] == f"127.0.0.1:{server.port}"
    assert sent.headers["authorization"] == "Bearer key-123"
    assert sent.headers["idempotency-key"] == "idem-1"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["accept-encoding"] == "gzip, deflate"
    assert json.loads(sent.body) == {"urls": ["https://loja.example/ç"]}
    assert sent.headers["content-length"] == str(len(sent.body))


def test_a_connection_the_server_closed_while_idle_is_not_reused(serve) -> None:
    # Keep-alive announced, then closed after the answer: the next call must not be
    # sent on the dead socket (no error, no retry spent), but on a new connection.
    count = itertools.count(1)
    server = serve(lambda r: answer({"n": next(count)}, close=True))
    c = client(server)
    assert c._call("GET", "/health", idempotent=True).data == {"n": 1}
    assert server.closed.acquire(timeout=30)  # closed on the server's side by now
    second = c._call("GET", "/health", idempotent=True)
    assert second.data == {"n": 2}
    assert second.attempts == 1
    assert server.connections == 2


def test_connection_close_from_the_server_is_honoured(serve) -> None:
    server = serve(lambda r: answer({}, headers={"Connection": "close"}, close=True))
    c = client(server)
    for _ in range(2):
        c._request("GET", "/health", idempotent=True)
    assert server.connections == 2


def test_a_refused_connection_is_a_transient_connect_error() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    c = BaseClient(f"http://127.0.0.1:{port}/api", "", FAST)
    with pytest.raises(ServiceError) as info:
        c._request("GET", "/health", idempotent=True)
    assert info.value.code == "connect_error"
    assert info.value.transient
    assert info.value.attempts == 2


def test_closed_without_an_answer_is_a_transient_network_error(serve) -> None:
    server = serve(lambda r: (b"", True))
    c = client(server)
    with pytest.raises(ServiceError) as info:
        c._request("DELETE", "/sessions/s1", idempotent=True)
    assert info.value.code == "network_error"
    assert info.value.transient
    assert len(server.requests) == 2  # idempotent: retried once, as max_attempts allows


def test_a_body_cut_short_is_a_network_error_and_the_connection_is_dropped(serve) -> None:
    def respond(r: Request) -> Answer:
        if len(server.requests) == 1:
            return b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"cut', True
        return answer({"whole": True})

    server = serve(respond)
    c = client(server)
    assert c._request("GET", "/jobs/j1", idempotent=True) == {"whole": True}
    assert server.connections == 2


def test_a_chunked_body_is_joined_and_the_connection_kept(serve) -> None:
    body = json.dumps({"items": list(range(50))}).encode()
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7]) for i in range(0, len(body), 7)
    )
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    server = serve(lambda r: (chunked, False))
    c = client(server)
    assert c._request("GET", "/jobs/j1/results", idempotent=True) == {"items": list(range(50))}
    assert c._request("GET", "/jobs/j1/results", idempotent=True) == {"items": list(range(50))}
    assert server.connections == 1


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, no zlib header
    ],
)
def test_compressed_answers_are_decoded(serve, encoding, compress) -> None:
    payload = compress(json.dumps({"title": "Produto " * 200}).encode())
    server = serve(lambda r: answer(payload, headers={"Content-Encoding": encoding}))
    assert client(server)._request("GET", "/x", idempotent=True) == {"title": "Produto " * 200}


@pytest.mark.parametrize("status", ["200 OK", "503 Service Unavailable"])
def test_a_body_that_cannot_be_decompressed_is_an_invalid_response(serve, status) -> None:
    server = serve(
        lambda r: answer(b"not gzip at all", status=status, headers={"Content-Encoding": "gzip"})
    )
    with pytest.raises(ServiceError) as info:
        client(server)._request("GET", "/x", idempotent=False)
    assert info.value.code == "invalid_response"
    assert info.value.transient is status.startswith("503")


def test_a_compression_bomb_is_stopped_at_the_size_cap(serve) -> None:
    bomb = gzip.compress(b"0" * (64 * 1024 * 1024))  # 64 MiB in about 64 KiB
    server = serve(lambda r: answer(bomb, headers={"Content-Encoding": "gzip"}))
    settings = ClientSettings(max_attempts=1, max_response_bytes=1024 * 1024)
    with pytest.raises(ServiceError) as info:
        client(server, settings)._request("GET", "/x", idempotent=True)
    assert info.value.code == "response_too_large"


def test_a_declared_length_over_the_cap_is_refused_unread(serve) -> None:
    server = serve(lambda r: (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n{", False))
    settings = ClientSettings(max_attempts=1, max_response_bytes=1024)
    with pytest.raises(ServiceError) as info:
        client(server, settings)._request("GET", "/x", idempotent=True)
    assert info.value.code == "response_too_large"


def test_a_server_that_never_answers_times_out_on_the_read_timeout(serve) -> None:
    server = serve(lambda r: None)
    settings = ClientSettings(read_timeout=0.2, deadline=10, max_attempts=1)
    with pytest.raises(ServiceError) as info:
        client(server, settings)._request("GET", "/x", idempotent=True)
    assert info.value.code == "timeout"
    assert info.value.transient


def test_error_answers_keep_their_status_code_and_retry_after(serve) -> None:
    server = serve(
        lambda r: answer(
            {"error": {"code": "capacity_exhausted", "message": "full"}},
            status="409 Conflict",
            headers={"Retry-After": "7"},
        )
    )
    with pytest.raises(ServiceError) as info:
        client(server)._request("POST", "/sessions", json={}, idempotent=False)
    assert (info.value.status, info.value.code, info.value.retry_after) == (
        409,
        "capacity_exhausted",
        7.0,
    )
    assert server.connections == 1


def test_an_empty_answer_is_none_and_keeps_the_connection(serve) -> None:
    server = serve(lambda r: (b"HTTP/1.1 204 No Content\r\n\r\n", False))
    c = client(server)
    assert c._request("DELETE", "/sessions/s1", idempotent=True) is None
    assert c._request("DELETE", "/sessions/s2", idempotent=True) is None
    assert server.connections == 1


def test_calls_from_many_threads_share_the_pool(serve) -> None:
    server = serve(lambda r: answer({"ok": True}))
    c = client(server)
    results: list[object] = []
    threads = [
        threading.Thread(
            target=lambda: results.extend(
                c._request("GET", "/health", idempotent=True) for _ in range(20)
            )
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [{"ok": True}] * 160
    assert server.connections <= 8


def test_httpx_keeps_https_proxied_and_injected_clients(monkeypatch) -> None:
    assert http1.pool_for("https://worker.example/api") is None
    assert http1.pool_for("ftp://worker.example/api") is None
    assert http1.pool_for("http://worker.example:8123/api") is http1.pool_for(
        "http://WORKER.example:8123/other"
    )
    injected = BaseClient("http://worker.example/api", "", FAST, http=httpx.Client())
    assert injected._fast is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "worker.local")
    assert http1.pool_for("http://worker.example/api") is None
    assert http1.pool_for("http://worker.local/api") is not None


def test_a_forked_child_starts_without_the_parents_connections() -> None:
    pool = http1.pool_for("http://127.0.0.1:9/api")
    assert pool is not None
    saved = dict(http1._pools)
    try:
        http1._reset_after_fork()
        assert http1.pool_for("http://127.0.0.1:9/api") is not pool
    finally:
        http1._pools.clear()
        http1._pools.update(saved)


def test_a_header_http_client_refuses_is_a_service_error_not_a_crash(serve) -> None:
    server = serve(lambda r: answer({}))
    c = BaseClient(server.url, "key\r\nX-Injected: 1", ClientSettings(max_attempts=1))
    with pytest.raises(ServiceError) as info:
        c._request("GET", "/health", idempotent=True)
    assert info.value.code == "network_error"
    assert "key" not in str(info.value)  # the secret is scrubbed from the message
    assert server.requests == []


def test_a_pool_keeps_at_most_its_share_of_idle_connections() -> None:
    pool = http1.Http1Pool("127.0.0.1", 9)
    conns = [http.client.HTTPConnection("127.0.0.1", 9) for _ in range(20)]
    for conn in conns:
        pool._checkin(conn)
    assert pool._idle == conns[: http1.KEEPALIVE_PER_SERVICE]
    pool.close()
    assert pool._idle == []
