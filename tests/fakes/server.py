"""A small threaded JSON HTTP server on loopback, the base of the fake Worker/Writer/ETL.

One ``FakeServer`` listens on 127.0.0.1 with an ephemeral port, routes requests by method
and path regex, speaks the contracts' error shape and bearer auth, and carries the fault
switches every fake shares (5xx bursts, latency, hangs, garbage bodies, going down).

All state of a fake is guarded by one lock (``self.lock``); route handlers run with it
held, so they may read and write state freely. Sleeps (latency, hangs) happen outside it.
"""

from __future__ import annotations

import hmac
import json
import random
import re
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Self
from urllib.parse import parse_qs, urlsplit

KEY_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_STATUS_CODES = {
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}


class ApiError(Exception):
    """Raised by a route handler; becomes ``{"error": {...}}`` with ``status``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str = "",
        *,
        fields: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message or code.replace("_", " ")
        self.fields = fields
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        error.update(self.extra)
        return {"error": error}


def invalid_request(fields: dict[str, str]) -> ApiError:
    return ApiError(422, "invalid_request", "request failed validation", fields=fields)


@dataclass
class Request:
    method: str
    path: str  # the route path: after the prefix, without the query string
    query: dict[str, str]
    headers: Message
    body: Any  # parsed JSON, or None when the request had no body
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route regex


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-serializable; None with 204 means no body
    headers: dict[str, str] = field(default_factory=dict)


class Call(NamedTuple):
    """One request as received: ``path`` is the route path plus ``?query`` when present."""

    method: str
    path: str
    json: Any


Handler = Callable[[Request], Response]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    name: str  # e.g. "GET /jobs/{id}/results", the key of ``route_counts``
    handler: Handler
    needs_body: bool


def iso(ts: float) -> str:
    """A clock reading as ISO 8601 with offset."""
    return datetime.fromtimestamp(ts, UTC).isoformat()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's listen backlog is 5: a client opening a few connections at once
    # while the accepting thread waits for the GIL gets its SYNs dropped and resent
    # after Linux's 1 s retransmission timeout. A real service listens with a backlog of
    # hundreds (nginx 511, gunicorn 2048); so does the fake.
    request_queue_size = 128
    fake: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, closed socket) is part of the tests, not a bug.
        pass


class _RequestHandler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.0"  # one request per connection: down() leaves nothing open
    timeout = 10  # seconds a silent client may hold a handler thread

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        self.server.fake._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


class _KeepAliveHandler(_RequestHandler):
    """HTTP/1.1 with persistent connections, as a real service answers (the benchmarks
    use it: a connection per request would measure TCP set-up, not the orchestrator).
    Every answer carries its Content-Length, so the connection can be reused."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stall


class FakeServer:
    """Base of the fakes. Subclasses call ``self.route(...)`` in ``__init__``."""

    prefix = "/api/v1"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        prefix: str | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        clock: Callable[[], float] = time.time,
        control: bool = False,
        keep_alive: bool = False,
    ) -> None:
        self.api_key = api_key
        # HTTP/1.1 keep-alive (off by default: down() then leaves no connection open).
        self.keep_alive = keep_alive
        # Remote control for multi-process tests: POST {root}/__fake__/call
        # {"method": "fail_next_requests", "args": [3]} or /__fake__/set {"latency": 2}.
        self.control = control
        if prefix is not None:
            self.prefix = prefix.rstrip("/")
        self.host = host
        self.port = port
        self.clock = clock
        self.lock = threading.RLock()
        self._routes: list[_Route] = []
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._in_flight = 0
        self._closed = False
        # Fault switches (settable at run time).
        self.latency = 0.0  # seconds added before every answer
        self._fail_next: list[int] = []  # statuses for the next requests
        self._hang_next: list[float] = []  # seconds to hang for the next requests
        self._garbage_next = 0
        # An outage that still counts what the client tried: every request is logged,
        # then its connection is dropped unanswered (the client sees the worker gone).
        self.unreachable = False
        # (method, path regex) of requests to hold unanswered until release_held().
        self._hold_rules: list[tuple[str, re.Pattern[str]]] = []
        # (method, path regex, status, error code) of the next matching requests to fail.
        self._fail_rules: list[tuple[str, re.Pattern[str], int, str]] = []
        self._released = threading.Event()
        self.holding = 0  # requests held right now
        # Random faults at rates (issue #15 storms): {"503": 0.03, "429": 0.03,
        # "lost": 0.02} -- a status answered instead of handling the request, or "lost":
        # the request is handled, then its connection dropped unanswered. Seeded by
        # `fault_seed` for a reproducible run.
        self.fault_rates: dict[str, float] = {}
        self.fault_rng = random.Random(0)
        # Inspection.
        self.calls: list[Call] = []
        self.route_counts: Counter[str] = Counter()
        self.faults_served: Counter[str] = Counter()  # "503", "hang", "garbage"
        self.errors: list[str] = []  # tracebacks of bugs in the fake itself

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> Self:
        self._closed = False
        with self.lock:
            if self._httpd is not None:
                return self
            self._stopping.clear()
            handler = _KeepAliveHandler if self.keep_alive else _RequestHandler
            httpd = _HTTPServer((self.host, self.port), handler)
            httpd.fake = self
            self.port = httpd.server_address[1]
            self._httpd = httpd
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{type(self).__name__}:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused) and wait for in-flight requests."""
        self._closed = True  # cancels a pending down_for() revival
        self._stop_listening()

    def _stop_listening(self) -> None:
        with self.lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        if httpd is None:
            return
        self._stopping.set()  # wakes hanging handlers
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        deadline = time.monotonic() + 5
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.01)

    def down(self) -> None:
        """Connection refused from now on; state is kept. ``up()`` listens again."""
        self._stop_listening()

    def down_for(self, seconds: float) -> None:
        """Go down now and come back up on the same port after ``seconds``."""

        def later() -> None:
            time.sleep(0.05)  # lets a remote control request get its answer first
            self.down()
            time.sleep(seconds)
            if not self._closed:
                self.up()

        threading.Thread(target=later, daemon=True).start()

    def up(self) -> None:
        """Listen again on the same port after ``down()``."""
        self.start()

    @property
    def is_up(self) -> bool:
        return self._httpd is not None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What Mission Control stores as the service's ``base_url``."""
        return f"{self.root_url}{self.prefix}"

    # -------------------------------------------------------------- fault switches
    def fail_next_requests(self, n: int, status: int = 503) -> None:
        """The next ``n`` requests get ``status`` with the error shape and change nothing."""
        with self.lock:
            self._fail_next.extend([status] * n)

    def hang_next(self, n: int, seconds: float) -> None:
        """The next ``n`` requests wait ``seconds`` before being handled (a client with a
        shorter timeout sees a timeout; the request is still processed afterwards, as a
        slow real server would, unless the fake is stopped meanwhile)."""
        with self.lock:
            self._hang_next.extend([seconds] * n)

    def garbage_next(self, n: int) -> None:
        """The next ``n`` requests get 200 with a body that is not JSON."""
        with self.lock:
            self._garbage_next += n

    def hold_next(self, method: str, path_regex: str, n: int = 1) -> None:
        """The next ``n`` requests matching ``method`` and ``path_regex`` (searched in
        the route path) are received and logged, then wait unanswered until
        ``release_held()`` (or ``stop()``); ``holding`` counts them. Tests use it to know
        a client is inside a call, e.g. to pause that process mid-call."""
        with self.lock:
            self._released.clear()
            self._hold_rules.extend([(method.upper(), re.compile(path_regex))] * n)

    def fail_matching(
        self, method: str, path_regex: str, n: int = 1, status: int = 502, code: str = ""
    ) -> None:
        """The next ``n`` requests of ``method`` whose route path matches ``path_regex``
        get ``status`` with ``code`` (default: the status's usual code) and change nothing."""
        with self.lock:
            rule = (method.upper(), re.compile(path_regex), status, code)
            self._fail_rules.extend([rule] * n)

    def _take_fail(self, method: str, path: str) -> tuple[int, str] | None:
        for i, (m, rx, status, code) in enumerate(self._fail_rules):
            if m == method and rx.search(path):
                del self._fail_rules[i]
                return status, code
        return None

    def release_held(self) -> None:
        """Let every held request through (it is then handled as usual)."""
        with self.lock:
            self._hold_rules.clear()
        self._released.set()

    def _roll_fault(self) -> tuple[int | None, bool]:
        """One draw against `fault_rates` (under the lock): (status to answer, lost)."""
        draw = self.fault_rng.random()
        for name, rate in self.fault_rates.items():
            if draw < rate:
                return (None, True) if name == "lost" else (int(name), False)
            draw -= rate
        return None, False

    def _take_hold(self, method: str, path: str) -> bool:
        for i, (m, rx) in enumerate(self._hold_rules):
            if m == method and rx.search(path):
                del self._hold_rules[i]
                return True
        return False

    def clear_faults(self) -> None:
        with self.lock:
            self._fail_next.clear()
            self._hang_next.clear()
            self._fail_rules.clear()
            self._garbage_next = 0
            self.latency = 0.0
            self.fault_rates = {}

    # ---------------------------------------------------------------- inspection
    def count(self, method: str, path_regex: str = "") -> int:
        """How many requests matched ``method`` and ``path_regex`` (searched in the path)."""
        rx = re.compile(path_regex)
        with self.lock:
            return sum(1 for c in self.calls if c.method == method and rx.search(c.path))

    def reset_calls(self) -> None:
        with self.lock:
            self.calls.clear()
            self.route_counts.clear()
            self.faults_served.clear()

    # ------------------------------------------------------------------- routing
    def route(self, method: str, path: str, handler: Handler, *, body: bool = False) -> None:
        """Register ``handler`` for ``method`` and ``path`` (``{name}`` is one segment)."""
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
        self._routes.append(
            _Route(method, re.compile(f"^{regex}$"), f"{method} {path}", handler, body)
        )

    def now(self) -> float:
        return self.clock()

    def before_request(self, request: Request) -> None:
        """Hook run under the lock before every routed request (lazy clocks)."""

    def check_auth(self, headers: Message) -> bool:
        if not self.api_key:
            return True
        got = headers.get("Authorization", "")
        return hmac.compare_digest(got.encode(), f"Bearer {self.api_key}".encode())

    # ------------------------------------------------------------------ serving
    def _serve(self, h: _RequestHandler) -> None:
        with self.lock:
            self._in_flight += 1
        try:
            status, payload, headers = self._answer(h)
            if status < 0:
                h.close_connection = True
                return  # stopped while hanging: drop the connection
            h.send_response(status)
            for name, value in headers.items():
                h.send_header(name, value)
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            pass
        except Exception:  # a bug in the fake: keep it visible without killing the thread
            self.errors.append(traceback.format_exc())
        finally:
            with self.lock:
                self._in_flight -= 1

    def _answer(self, h: _RequestHandler) -> tuple[int, bytes, dict[str, str]]:
        split = urlsplit(h.path)
        full_path = split.path
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        if self.control and full_path.startswith("/__fake__/"):
            return self._json(*self._control(full_path, raw))
        route_path = full_path
        if self.prefix and full_path.startswith(self.prefix + "/"):
            route_path = full_path[len(self.prefix) :]
        elif self.prefix:
            route_path = ""
        try:
            logged: Any = json.loads(raw) if raw else None
        except ValueError:
            logged = raw.decode("utf-8", "replace")

        with self.lock:
            self.calls.append(
                Call(h.command, route_path + (f"?{split.query}" if split.query else ""), logged)
            )
            fail = self._fail_next.pop(0) if self._fail_next else None
            fail_code = ""
            if fail is None and (rule := self._take_fail(h.command, route_path)):
                fail, fail_code = rule
            lost = False
            if fail is None and self.fault_rates:
                fail, lost = self._roll_fault()
            hang = self._hang_next.pop(0) if self._hang_next and fail is None else None
            garbage = False
            if fail is None and hang is None and self._garbage_next:
                self._garbage_next -= 1
                garbage = True
            if self.unreachable:
                self.faults_served["unreachable"] += 1
                return -1, b"", {}
            latency = self.latency
            hold = fail is None and not garbage and self._take_hold(h.command, route_path)
            if hold:
                self.holding += 1

        if latency and self._stopping.wait(latency):
            return -1, b"", {}
        if fail is not None:
            with self.lock:
                self.faults_served[str(fail)] += 1
            code = fail_code or _STATUS_CODES.get(fail, "injected_failure")
            return self._json(ApiError(fail, code, "injected failure").body(), fail)
        if garbage:
            with self.lock:
                self.faults_served["garbage"] += 1
            return (
                200,
                b"<html><body>502 oops, not JSON</body></html>",
                {"Content-Type": "text/html"},
            )
        if hang is not None:
            with self.lock:
                self.faults_served["hang"] += 1
            if self._stopping.wait(hang):
                return -1, b"", {}
        if hold:
            try:
                while not self._released.wait(0.05):
                    if self._stopping.is_set():
                        return -1, b"", {}
            finally:
                with self.lock:
                    self.holding -= 1

        response = self._dispatch(h.command, route_path, query, h.headers, raw)
        if lost:
            with self.lock:
                self.faults_served["lost"] += 1
            return -1, b"", {}  # handled, but the answer never reaches the client
        if response.status == 204 or response.body is None:
            return response.status, b"", response.headers
        status, payload, headers = self._json(response.body, response.status)
        headers.update(response.headers)
        return status, payload, headers

    def _control(self, path: str, raw: bytes) -> tuple[Any, int]:
        try:
            body = json.loads(raw) if raw else {}
            if path == "/__fake__/call":
                fn = getattr(self, body["method"])
                result = fn(*body.get("args", []), **body.get("kwargs", {}))
                return {"result": result if isinstance(result, int | str | None) else None}, 200
            if path == "/__fake__/set":
                with self.lock:
                    for name, value in body.items():
                        if not hasattr(self, name) or name.startswith("_"):
                            raise AttributeError(name)
                        current = getattr(self, name)
                        setattr(self, name, set(value) if isinstance(current, set) else value)
                return {"set": sorted(body)}, 200
            if path == "/__fake__/calls":
                with self.lock:
                    return {
                        "calls": [list(c) for c in self.calls],
                        "route_counts": dict(self.route_counts),
                    }, 200
        except (ValueError, KeyError, AttributeError, TypeError) as exc:
            return ApiError(400, "bad_control", repr(exc)).body(), 400
        return ApiError(404, "not_found", path).body(), 404

    @staticmethod
    def _json(body: Any, status: int) -> tuple[int, bytes, dict[str, str]]:
        payload = json.dumps(body, ensure_ascii=False).encode()
        return status, payload, {"Content-Type": "application/json; charset=utf-8"}

    def _dispatch(
        self, method: str, path: str, query: dict[str, str], headers: Message, raw: bytes
    ) -> Response:
        try:
            if not self.check_auth(headers):
                raise ApiError(401, "unauthorized", "missing or wrong bearer key")
            matched: tuple[_Route, dict[str, str]] | None = None
            allowed = False
            for r in self._routes:
                m = r.pattern.match(path)
                if m is None:
                    continue
                allowed = True
                if r.method == method:
                    matched = (r, m.groupdict())
                    break
            if matched is None:
                if allowed:
                    raise ApiError(405, "method_not_allowed", f"{method} not allowed here")
                raise ApiError(404, "not_found", f"no route for {path or '/'}")
            r, params = matched
            body: Any = None
            if raw or r.needs_body:
                try:
                    body = json.loads(raw.decode("utf-8"))
                except ValueError:
                    raise ApiError(400, "invalid_json", "body is not valid JSON") from None
            req = Request(method, path, query, headers, body, params)
            with self.lock:
                self.route_counts[r.name] += 1
                self.before_request(req)
                return r.handler(req)
        except ApiError as exc:
            return Response(exc.status, exc.body())


@contextmanager
def running(server: FakeServer) -> Iterator[FakeServer]:
    with server:
        yield server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
