"""BaseClient: URL joining, auth, timeouts, deadline, retries, error mapping, size cap,
secret hygiene, and the shared pooled client."""

from __future__ import annotations

import json
import logging
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from mission_control import outbound
from orchestrator.clients import base
from orchestrator.clients.base import (
    BaseClient,
    ClientSettings,
    ServiceError,
    join_url,
    parse_retry_after,
    shared_http_client,
)
from registry.config import Config

API_KEY = "sk-live-TOPSECRET-0123456789"
FAST = ClientSettings(deadline=5, max_attempts=3, backoff_base=0.001, backoff_cap=5)

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that answers from a list (the last answer repeats)
    or a function, and remembers every request."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer

    @property
    def calls(self) -> int:
        return len(self.requests)


def error(status: int, code: str, message: str = "", **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, **extra}})


def make_client(
    rec: Recorder,
    *,
    settings: ClientSettings = FAST,
    api_key: str = API_KEY,
    base_url: str = "http://svc.test/api/v1",
    sleeps: list[float] | None = None,
) -> BaseClient:
    sleeper = sleeps.append if sleeps is not None else (lambda _s: None)
    return BaseClient(
        base_url, api_key, settings, transport=httpx.MockTransport(rec), sleep=sleeper
    )


def call(client: BaseClient, method: str = "GET", *, idempotent: bool = True) -> Any:
    return client._request(method, "/things", idempotent=idempotent)


def raises(client: BaseClient, method: str = "GET", *, idempotent: bool = True) -> ServiceError:
    with pytest.raises(ServiceError) as info:
        call(client, method, idempotent=idempotent)
    return info.value


# -- URLs, headers, timeouts -------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "path", "expected"),
    [
        ("http://h/api/v1", "/health", "http://h/api/v1/health"),
        ("http://h/api/v1/", "/health", "http://h/api/v1/health"),
        ("http://h/api/v1/", "health", "http://h/api/v1/health"),
        ("http://h/api/v1", "health", "http://h/api/v1/health"),
        ("http://h/api/v1//", "//health", "http://h/api/v1/health"),
        ("http://h:8100", "/sessions/s-1/jobs", "http://h:8100/sessions/s-1/jobs"),
        ("http://h/", "/x", "http://h/x"),
        (" http://h/api ", "x/y/", "http://h/api/x/y/"),
        ("http://h/api", "", "http://h/api"),
    ],
)
def test_join_url_never_doubles_or_loses_slashes(base_url: str, path: str, expected: str) -> None:
    assert join_url(base_url, path) == expected


def test_join_url_refuses_an_absolute_path() -> None:
    with pytest.raises(ValueError):
        join_url("http://h/api", "http://evil/x")


def test_it_sends_the_bearer_key_and_accepts_json() -> None:
    rec = Recorder(httpx.Response(200, json={"ok": True}))
    assert call(make_client(rec)) == {"ok": True}
    request = rec.requests[0]
    assert str(request.url) == "http://svc.test/api/v1/things"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Accept"] == "application/json"


def test_it_sends_no_authorization_without_a_key() -> None:
    rec = Recorder(httpx.Response(200, json={}))
    call(make_client(rec, api_key=""))
    assert "Authorization" not in rec.requests[0].headers


def test_it_sends_json_bodies_and_drops_none_params() -> None:
    rec = Recorder(httpx.Response(201, json={"id": "x"}))
    client = make_client(rec)
    reply = client._call(
        "POST",
        "/things",
        json={"name": "ação", "n": 1},
        params={"cursor": None, "limit": 5},
        idempotent=True,
    )
    assert reply.status == 201
    assert reply.attempts == 1
    request = rec.requests[0]
    assert request.url.params == httpx.QueryParams({"limit": "5"})
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {"name": "ação", "n": 1}
    assert client.last_latency_ms is not None


def test_it_uses_explicit_timeouts_capped_by_the_deadline() -> None:
    rec = Recorder(httpx.Response(200, json={}))
    call(make_client(rec, settings=ClientSettings(connect_timeout=2, read_timeout=9, deadline=30)))
    timeout = rec.requests[0].extensions["timeout"]
    assert timeout["connect"] == 2
    assert timeout["read"] == 9
    rec = Recorder(httpx.Response(200, json={}))
    call(make_client(rec, settings=ClientSettings(connect_timeout=2, read_timeout=9, deadline=1)))
    timeout = rec.requests[0].extensions["timeout"]
    assert 0 < timeout["read"] <= 1
    assert 0 < timeout["connect"] <= 1


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_an_empty_success_body_is_none(status: int) -> None:
    assert call(make_client(Recorder(httpx.Response(status)))) is None


def test_non_json_constants_become_null() -> None:
    rec = Recorder(httpx.Response(200, content=b'{"a": NaN, "b": [Infinity, 1]}'))
    assert call(make_client(rec)) == {"a": None, "b": [None, 1]}


def test_an_unencodable_request_is_a_permanent_invalid_request() -> None:
    rec = Recorder(httpx.Response(200, json={}))
    with pytest.raises(ServiceError) as info:
        make_client(rec)._request("POST", "/x", json={"v": float("nan")}, idempotent=True)
    assert info.value.code == "invalid_request"
    assert not info.value.transient
    assert rec.calls == 0


# -- error mapping -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "code", "transient"),
    [
        (error(400, "invalid_json", "bad"), "invalid_json", False),
        (error(401, "unauthorized", "no"), "unauthorized", False),
        (error(404, "session_not_found", "gone"), "session_not_found", False),
        (error(408, "request_timeout"), "request_timeout", True),
        (error(409, "capacity_exhausted", "full"), "capacity_exhausted", False),
        (error(409, "session_busy"), "session_busy", False),
        (error(409, "session_not_ready"), "session_not_ready", False),
        (error(413, "batch_too_large"), "batch_too_large", False),
        (error(422, "invalid_request", fields={"url": "not absolute"}), "invalid_request", False),
        (error(429, "rate_limited"), "rate_limited", True),
        (error(500, "internal"), "internal", True),
        (error(501, "not_implemented"), "not_implemented", False),
        (error(502, "bad_gateway"), "bad_gateway", True),
        (error(502, "provider_error", "browser did not start"), "provider_error", False),
        (error(503, "unavailable"), "unavailable", True),
        (httpx.Response(503), "http_503", True),
        (httpx.Response(404, json={"detail": "Not found"}), "http_404", False),
        (httpx.Response(302, headers={"Location": "/login"}), "http_302", False),
    ],
)
def test_error_statuses_map_to_codes_and_transience(
    response: httpx.Response, code: str, transient: bool
) -> None:
    rec = Recorder(response)
    err = raises(make_client(rec))
    assert err.code == code
    assert err.status == response.status_code
    assert err.transient is transient
    assert rec.calls == (FAST.max_attempts if transient else 1)


def test_an_error_keeps_its_message_fields_and_body() -> None:
    rec = Recorder(
        error(
            409,
            "count_mismatch",
            "writer holds 4975",
            stored_records=4975,
            total_records=4980,
        )
    )
    err = raises(make_client(rec), "POST")
    assert err.code == "count_mismatch"
    assert err.message == "writer holds 4975"
    assert err.conflict
    assert err.body is not None
    assert err.body["stored_records"] == 4975
    assert str(err) == "count_mismatch (HTTP 409): writer holds 4975"

    rec = Recorder(error(422, "invalid_records", "bad", fields={"records[3]": "no url"}))
    err = raises(make_client(rec), "POST")
    assert err.fields == {"records[3]": "no url"}


def test_infrastructure_tells_service_faults_from_request_faults() -> None:
    assert ServiceError("timeout", transient=True).infrastructure
    assert ServiceError("unauthorized", status=401).infrastructure
    assert ServiceError("invalid_response", status=200).infrastructure
    assert not ServiceError("provider_error", status=502).infrastructure
    assert not ServiceError("capacity_exhausted", status=409).infrastructure
    assert not ServiceError("invalid_records", status=422).infrastructure


@pytest.mark.parametrize(
    ("status", "body", "transient"),
    [
        (200, b"<html><body>Welcome to nginx</body></html>", False),
        (200, b'{"id": "s-1", "status": "re', False),
        (201, b"\xff\xfe\x00garbage", False),
        (404, b"<html>Not Found</html>", False),
        (502, b"<html><h1>502 Bad Gateway</h1></html>", True),
        (500, b'{"error": {"code": "inter', True),
    ],
)
def test_garbage_bodies_are_invalid_responses(status: int, body: bytes, transient: bool) -> None:
    rec = Recorder(httpx.Response(status, content=body, headers={"Content-Type": "text/html"}))
    err = raises(make_client(rec))
    assert err.code == "invalid_response"
    assert err.status == status
    assert err.transient is transient
    assert rec.calls == (FAST.max_attempts if transient else 1)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "connect_error"),
        (httpx.ConnectTimeout("timed out"), "connect_error"),
        (httpx.ReadTimeout("timed out"), "timeout"),
        (httpx.WriteTimeout("timed out"), "timeout"),
        (httpx.RemoteProtocolError("Server disconnected"), "network_error"),
        (httpx.ReadError("Connection reset by peer"), "network_error"),
    ],
)
def test_transport_failures_are_transient(exc: Exception, code: str) -> None:
    rec = Recorder(exc)
    err = raises(make_client(rec))
    assert err.code == code
    assert err.transient
    assert err.status is None
    assert rec.calls == FAST.max_attempts


def test_service_errors_survive_pickling() -> None:
    err = ServiceError("count_mismatch", "m", status=409, body={"stored_records": 1}, fields={})
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.code, copy.message, copy.status, copy.body) == (
        "count_mismatch",
        "m",
        409,
        {"stored_records": 1},
    )


# -- retries -------------------------------------------------------------------------


def test_transient_failures_are_retried_then_succeed() -> None:
    sleeps: list[float] = []
    rec = Recorder(error(503, "unavailable"), httpx.Response(500), httpx.Response(200, json=[1]))
    assert call(make_client(rec, sleeps=sleeps)) == [1]
    assert rec.calls == 3
    assert len(sleeps) == 2


def test_retries_are_bounded_by_max_attempts() -> None:
    sleeps: list[float] = []
    rec = Recorder(error(503, "unavailable"))
    settings = ClientSettings(deadline=60, max_attempts=5, backoff_base=0.5, backoff_cap=2)
    err = raises(make_client(rec, settings=settings, sleeps=sleeps))
    assert err.code == "unavailable"
    assert rec.calls == 5
    assert len(sleeps) == 4
    # Capped exponential with equal jitter: 0.5→[0.25,0.5), 1→[0.5,1), then the cap.
    assert 0.25 <= sleeps[0] < 0.5
    assert 0.5 <= sleeps[1] < 1
    assert all(s <= 2 for s in sleeps)


def test_backoff_is_capped_exponential_with_jitter() -> None:
    s = ClientSettings(backoff_base=1, backoff_cap=5)
    assert s.backoff_s(1, 0.0) == 0.5
    assert s.backoff_s(1, 0.999) < 1
    assert s.backoff_s(3, 0.0) == 2
    assert s.backoff_s(10, 0.999) <= 5


def test_a_non_idempotent_call_is_not_retried_once_sent() -> None:
    rec = Recorder(error(503, "unavailable"))
    raises(make_client(rec), "POST", idempotent=False)
    assert rec.calls == 1
    rec = Recorder(httpx.ReadTimeout("slow"))
    raises(make_client(rec), "POST", idempotent=False)
    assert rec.calls == 1


def test_a_non_idempotent_call_is_retried_when_never_sent() -> None:
    rec = Recorder(httpx.ConnectError("refused"), httpx.Response(201, json={"id": 1}))
    assert call(make_client(rec), "POST", idempotent=False) == {"id": 1}
    assert rec.calls == 2


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    sleeps: list[float] = []
    rec = Recorder(
        httpx.Response(429, headers={"Retry-After": "2"}, json={"error": {"code": "slow_down"}}),
        httpx.Response(200, json={}),
    )
    call(make_client(rec, sleeps=sleeps))
    assert rec.calls == 2
    assert sleeps == [2.0]


def test_a_retry_after_beyond_the_cap_stops_retrying_and_is_reported() -> None:
    sleeps: list[float] = []
    rec = Recorder(httpx.Response(503, headers={"Retry-After": "120"}))
    err = raises(make_client(rec, sleeps=sleeps))
    assert rec.calls == 1
    assert sleeps == []
    assert err.transient
    assert err.retry_after == 120


def test_parse_retry_after_reads_seconds_and_dates() -> None:
    import datetime as dt

    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert parse_retry_after("7") == 7
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-3") == 0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after(None) is None


# -- the total deadline ---------------------------------------------------------------


class FakeClock:
    """A monotonic clock that moves only when told: deadlines without wall-clock bounds."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_retries_never_run_past_the_deadline() -> None:
    clock = FakeClock()

    def slow_503(request: httpx.Request) -> httpx.Response:
        clock.advance(0.15)  # a slow failing service
        return httpx.Response(503)

    rec = Recorder(slow_503)
    settings = ClientSettings(deadline=0.4, max_attempts=10, backoff_base=0.01, backoff_cap=1)
    client = BaseClient(
        "http://svc.test",
        "",
        settings,
        transport=httpx.MockTransport(rec),
        sleep=clock.advance,
        clock=clock,
    )
    started = clock()
    with pytest.raises(ServiceError) as info:
        client._request("GET", "/x", idempotent=True)
    assert info.value.transient
    assert 2 <= rec.calls <= 3
    # At most one attempt started before the deadline may finish after it.
    assert clock() - started < 0.4 + 0.15 + 0.01 * 2**rec.calls


def test_a_backoff_that_would_cross_the_deadline_is_not_slept() -> None:
    sleeps: list[float] = []
    rec = Recorder(httpx.Response(429, headers={"Retry-After": "3"}))
    settings = ClientSettings(deadline=1, max_attempts=5, backoff_base=0.01, backoff_cap=5)
    raises(make_client(rec, settings=settings, sleeps=sleeps))
    assert rec.calls == 1
    assert sleeps == []


class SlowDrip(httpx.SyncByteStream):
    """A body that arrives one byte at a time: no single read ever times out."""

    def __init__(self, clock: FakeClock, delay: float, chunks: int) -> None:
        self.clock = clock
        self.delay = delay
        self.chunks = chunks
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        yield b'{"data": "'
        for _ in range(self.chunks):
            self.clock.advance(self.delay)
            self.sent += 1
            yield b"x"
        yield b'"}'


def test_a_slow_drip_cannot_hang_a_call() -> None:
    clock = FakeClock()
    drip = SlowDrip(clock, 0.02, 1000)
    rec = Recorder(lambda r: httpx.Response(200, stream=drip))
    settings = ClientSettings(deadline=0.3, max_attempts=3, backoff_base=0.001)
    client = BaseClient(
        "http://svc.test",
        "",
        settings,
        transport=httpx.MockTransport(rec),
        sleep=clock.advance,
        clock=clock,
    )
    with pytest.raises(ServiceError) as info:
        client._request("GET", "/x", idempotent=True)
    assert info.value.code == "deadline_exceeded"
    assert info.value.transient
    # Cut at the first chunk past the deadline, not after the 1000 the body holds.
    assert drip.sent <= 0.3 / 0.02 + 1
    assert rec.calls == 1


# -- body size cap ---------------------------------------------------------------------


def test_a_declared_large_body_is_refused() -> None:
    big = b"[" + b"1," * 600 + b"1]"
    rec = Recorder(httpx.Response(200, content=big))
    settings = ClientSettings(max_response_bytes=1000, backoff_base=0.001)
    err = raises(make_client(rec, settings=settings))
    assert err.code == "response_too_large"
    assert not err.transient
    assert rec.calls == 1


class Endless(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        while True:
            yield b"x" * 4096


def test_an_undeclared_large_body_is_cut_while_streaming() -> None:
    rec = Recorder(lambda r: httpx.Response(200, stream=Endless()))
    settings = ClientSettings(max_response_bytes=64 * 1024, backoff_base=0.001)
    err = raises(make_client(rec, settings=settings))
    assert err.code == "response_too_large"
    assert rec.calls == 1


def test_a_body_at_the_cap_is_read() -> None:
    body = json.dumps(["x" * 90]).encode()
    rec = Recorder(httpx.Response(200, content=body))
    settings = ClientSettings(max_response_bytes=len(body))
    assert call(make_client(rec, settings=settings)) == ["x" * 90]


# -- secrets ------------------------------------------------------------------------------


def test_the_api_key_never_reaches_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    echo = error(
        503,
        "unavailable",
        f"bad header Authorization: Bearer {API_KEY}; key={API_KEY}",
    )
    rec = Recorder(echo, httpx.ConnectError(f"refused while sending {API_KEY}"), echo)
    err = raises(make_client(rec))
    assert rec.calls == 3
    for text in (str(err), repr(err), err.message, caplog.text):
        assert API_KEY not in text
    assert "***" in err.message
    assert "retrying" in caplog.text  # the retries were logged, without the key


def test_credentials_in_the_base_url_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    rec = Recorder(httpx.Response(503), httpx.Response(200, json={}))
    client = make_client(rec, base_url="http://admin:hunter22@svc.test/api")
    call(client)
    assert "hunter22" not in caplog.text
    assert "hunter22" not in repr(client)


def test_extra_secrets_are_scrubbed_from_messages() -> None:
    rec = Recorder(error(502, "provider_error", "proxy http://u:pw-XYZ@1.2.3.4:80 failed pw-XYZ"))
    with pytest.raises(ServiceError) as info:
        make_client(rec)._request("POST", "/sessions", json={}, idempotent=True, secrets=["pw-XYZ"])
    assert "pw-XYZ" not in str(info.value)


# -- configuration and the shared client ------------------------------------------------


def test_settings_come_from_config_keys() -> None:
    cfg = Config(
        {
            "http_connect_timeout_s": 1.5,
            "http_read_timeout_s": 7,
            "http_deadline_s": 12,
            "http_max_attempts": 4,
        }
    )
    s = ClientSettings.from_config(cfg)
    assert (s.connect_timeout, s.read_timeout, s.deadline, s.max_attempts) == (1.5, 7, 12, 4)
    assert ClientSettings.from_config(Config()) == ClientSettings(
        connect_timeout=3, read_timeout=15, deadline=30, max_attempts=3
    )


def test_the_shared_client_is_one_per_service_and_process_and_reset_on_fork() -> None:
    origin = base.service_origin("http://svc.test/api/v1")
    seen: list[httpx.Client] = []
    threads = [
        threading.Thread(target=lambda: seen.append(shared_http_client(origin))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen}) == 1
    assert BaseClient("http://svc.test")._http is seen[0]
    assert BaseClient("http://SVC.test:80/other")._http is seen[0]
    assert BaseClient("http://svc.test:8080")._http is not seen[0]
    assert BaseClient("https://svc.test")._http is not seen[0]

    before = shared_http_client()
    parents = dict(base._shared_clients)
    base._reset_after_fork()  # what os.register_at_fork runs in a child
    after = shared_http_client()
    assert after is not before
    # This process is no child: give it its clients back (dropped, their open sockets
    # would be garbage-collected unclosed under other tests).
    after.close()
    base._shared_clients.clear()
    base._shared_clients.update(parents)


def test_every_shared_client_verifies_tls_with_the_one_context_of_the_process() -> None:
    # What that context verifies: tests/integration/test_outbound_policy.py.
    contexts = {
        id(BaseClient(url)._http._transport._pool._ssl_context)  # type: ignore[attr-defined]
        for url in ("https://a.test", "https://b.test:8443", "http://c.test")
    }
    assert contexts == {id(outbound.tls_context())}


def test_a_given_http_client_is_used_and_not_closed() -> None:
    rec = Recorder(httpx.Response(200, json={"a": 1}))
    http = httpx.Client(transport=httpx.MockTransport(rec))
    with BaseClient("http://svc.test", http=http) as client:
        assert client._request("GET", "/x", idempotent=True) == {"a": 1}
    assert not http.is_closed
    http.close()


def test_an_unusable_base_url_is_a_permanent_invalid_url() -> None:
    client = BaseClient("ftp://svc.test/api", "", FAST, http=httpx.Client())
    with pytest.raises(ServiceError) as info:
        client._request("GET", "/x", idempotent=True)
    assert info.value.code == "invalid_url"
    assert not info.value.transient
    assert info.value.infrastructure


@pytest.mark.parametrize(("status", "transient"), [(200, False), (503, True)])
def test_a_body_that_cannot_be_decompressed_is_an_invalid_response(
    status: int, transient: bool
) -> None:
    rec = Recorder(
        lambda r: httpx.Response(
            status,
            headers={"Content-Encoding": "gzip"},
            stream=httpx.ByteStream(b"not gzip at all"),
        )
    )
    err = raises(make_client(rec))
    assert err.code == "invalid_response"
    assert err.status == status
    assert err.transient is transient


def test_a_real_server_that_never_answers_is_cut_at_the_deadline() -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)  # read nothing, answer nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    settings = ClientSettings(connect_timeout=1, read_timeout=30, deadline=0.4, max_attempts=5)
    read_timeouts: list[float] = []

    def record_timeout(request: httpx.Request) -> None:
        read_timeouts.append(request.extensions["timeout"]["read"])

    http = httpx.Client(event_hooks={"request": [record_timeout]})
    try:
        c = BaseClient(f"http://127.0.0.1:{port}", API_KEY, settings, http=http)
        with c, pytest.raises(ServiceError) as info:
            c._request("GET", "/health", idempotent=True)
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()
    assert info.value.code == "deadline_exceeded"
    assert info.value.transient
    assert info.value.attempts == 1
    # The socket waited for what was left of the 0.4 s deadline, not the 30 s read timeout.
    assert len(read_timeouts) == 1
    assert 0 < read_timeouts[0] <= 0.4


def test_a_call_may_override_the_deadline() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        time.sleep(0.05)
        return httpx.Response(503)

    rec = Recorder(slow)
    settings = ClientSettings(deadline=30, max_attempts=10, backoff_base=0.01)
    client = BaseClient("http://svc.test", "", settings, transport=httpx.MockTransport(rec))
    with pytest.raises(ServiceError) as info:
        client._request("GET", "/x", idempotent=True, deadline=0.12)
    assert rec.calls <= 3
    # The last attempt may find no time left and end before sending anything.
    assert rec.calls <= info.value.attempts <= rec.calls + 1
