"""What every outgoing HTTP call shares: one error type, timeouts, a total deadline,
bounded retries, a response size cap and secret hygiene.

Every client in this package subclasses `BaseClient` and calls `_request()` (parsed
JSON) or `_call()` (parsed JSON plus status and latency). Failures of any kind come
out as one `ServiceError` whose `transient` flag tells the retry loop (and callers)
whether trying again may help; `infrastructure` tells callers whether the failure is
the service's fault (feed the circuit breaker) rather than the request's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import functools
import json
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Self

import httpx
import tenacity

from mission_control import outbound
from mission_control.backoff import capped_exponential_s
from mission_control.logging import hide, redact
from orchestrator.clients import http1

logger = logging.getLogger("orchestrator.clients")

MAX_RESPONSE_BYTES = 10 * 1024 * 1024
_MESSAGE_LIMIT = 500
# Our code meaning "the request was never sent" (so even a non-idempotent call may be
# retried): a service must not be able to claim it.
_RESERVED_CODES = frozenset({"connect_error"})
# 409 answers are decisions of the service about the request (no slot, session busy),
# not faults: never retried here, handled by the caller.
CONFLICT_CODES = frozenset({"capacity_exhausted", "session_busy", "session_not_ready"})
# A 502 with these codes is a failure of the thing being created (POST /sessions could
# not start a browser with this proxy), not of the service: the caller rotates.
NOT_TRANSIENT_5XX_CODES = frozenset({"provider_error"})


class ServiceError(Exception):
    """Any failure of a call to an external service.

    `code` is the contract's snake_case code when the service sent one, else ours:
    `timeout`, `connect_error` (the request was never sent), `network_error` (the
    connection broke mid-exchange), `invalid_response`, `invalid_request` (we could
    not encode the request), `deadline_exceeded`, `response_too_large`, `http_<status>`.
    `invalid_url` (the base URL is unusable) and `refused` (the outbound policy of
    `mission_control.outbound` refused the target; nothing was dialed) are ours too. `message` never contains
    the API key or proxy credentials.
    """

    def __init__(
        self,
        code: str,
        message: str = "",
        *,
        status: int | None = None,
        transient: bool = False,
        retry_after: float | None = None,
        fields: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.status = status
        self.transient = transient
        self.retry_after = retry_after
        self.fields = fields
        self.body = body
        # How many attempts the call made before giving up (set by the client).
        self.attempts = 1

    def __str__(self) -> str:
        where = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{self.code}{where}: {self.message}" if self.message else f"{self.code}{where}"

    def __repr__(self) -> str:
        return (
            f"ServiceError(code={self.code!r}, status={self.status!r}, "
            f"transient={self.transient!r}, message={self.message!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable (django-q2 stores task exceptions) despite keyword-only arguments.
        return (_rebuild_error, (self.code, self.message, self.__dict__.copy()))

    @property
    def conflict(self) -> bool:
        """A 409: the service refused this request in its current state (no free slot,
        session busy or not ready, count mismatch). Not retried; the caller decides."""
        return self.status == 409

    @property
    def infrastructure(self) -> bool:
        """The service is at fault (unreachable, slow, 5xx/429, refuses our key, answers
        garbage): record it on the circuit breaker and never blame a mission for it."""
        if self.code in NOT_TRANSIENT_5XX_CODES and not self.transient:
            return False  # POST /sessions: the session failed, not the worker
        if self.code in ("invalid_response", "invalid_url"):
            return True
        return self.transient or self.status in (401, 403)


def _rebuild_error(code: str, message: str, state: dict[str, Any]) -> ServiceError:
    err = ServiceError(code, message)
    err.__dict__.update(state)
    return err


def is_transient_status(status: int, code: str | None = None) -> bool:
    """408, 429 and 5xx (except 501) may succeed later; other statuses will not."""
    if code in NOT_TRANSIENT_5XX_CODES or code in CONFLICT_CODES:
        return False
    return status in (408, 429) or (500 <= status <= 599 and status != 501)


@dataclass(frozen=True)
class ClientSettings:
    connect_timeout: float = 3.0
    read_timeout: float = 15.0
    # Total time of one logical call, retries and backoff included.
    deadline: float = 30.0
    max_attempts: int = 3
    backoff_base: float = 0.2
    backoff_cap: float = 5.0
    max_response_bytes: int = MAX_RESPONSE_BYTES

    @classmethod
    def from_config(cls, cfg: Any) -> ClientSettings:
        """From a `registry.config.Config` snapshot (or any mapping of its keys)."""
        return cls(
            connect_timeout=float(cfg["http_connect_timeout_s"]),
            read_timeout=float(cfg["http_read_timeout_s"]),
            deadline=float(cfg["http_deadline_s"]),
            max_attempts=int(cfg["http_max_attempts"]),
        )

    def backoff_s(self, attempt: int, rand: float) -> float:
        """Capped exponential backoff after attempt `attempt` (1-based), with equal
        jitter: half the delay is fixed, half is `rand` in [0, 1) of it."""
        raw = capped_exponential_s(attempt, self.backoff_base, self.backoff_cap)
        return raw / 2 + raw / 2 * rand


@dataclass(frozen=True)
class RawResponse:
    """What `BaseClient._exchange` got back, whatever the status."""

    status: int
    body: bytes
    encoding: str
    headers: httpx.Headers
    latency_ms: int

    def text(self) -> str:
        return self.body.decode(self.encoding, "replace")


@dataclass(frozen=True)
class ApiResponse:
    status: int
    data: Any
    headers: httpx.Headers
    latency_ms: int
    attempts: int


def join_url(base: str, path: str) -> str:
    """`base` + `path` with exactly one slash between them; an empty path is `base`."""
    base = base.strip()
    path = path.strip()
    if not path:
        return base
    if path.startswith(("http://", "https://")):
        raise ValueError("path must be relative to the base URL")
    return base.rstrip("/") + "/" + path.lstrip("/")


def url_secrets(url: str) -> list[str]:
    """The strings of `url` that must never be shown: the whole URL and its password
    (raw and percent-decoded), for a peer that echoes them back in an error."""
    secrets = [url]
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return secrets
    password = parsed.password
    raw = parsed.userinfo.decode("ascii", "replace").partition(":")[2]
    secrets += [s for s in (password, raw) if s]
    return secrets


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def parse_datetime(value: Any) -> dt.datetime | None:
    """An aware datetime from ISO 8601 (naive values are taken as UTC); None when
    absent or unreadable (timestamps are informative, never worth failing a call)."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


# -- the shared connection pools ---------------------------------------------------

# One pooled client per service (origin: scheme, host and port), so that the calls to
# one service never queue behind another's on a pool lock (httpcore serialises its
# connection bookkeeping per pool; with one pool for every service that lock was where
# the call threads spent a third of their time). Idle keep-alive connections per
# service: the same number as http1 keeps.
KEEPALIVE_PER_SERVICE = http1.KEEPALIVE_PER_SERVICE
_shared_clients: dict[str, httpx.Client] = {}
_shared_lock = threading.Lock()


@functools.lru_cache(maxsize=1024)
def service_origin(url: str) -> str:
    """The pool key of a service's base URL: scheme://host:port, lower case (cached:
    it is asked on every client built, with the few base URLs there are)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return ""
    return f"{parsed.scheme}://{parsed.host}:{parsed.port or ''}".lower()


def warm_up() -> None:
    """What the first client of a process would otherwise pay in a tick: the TLS
    context and the import of httpx's transport (httpcore, about 70 ms of CPU)."""
    httpx.HTTPTransport(verify=outbound.tls_context()).close()


def shared_http_client(origin: str = "") -> httpx.Client:
    """One pooled `httpx.Client` per service origin and process, created on first use.
    Timeouts are given per request; redirects are not followed (a service answers
    where it is)."""
    client = _shared_clients.get(origin)
    if client is not None:
        return client
    with _shared_lock:
        client = _shared_clients.get(origin)
        if client is None:
            client = _shared_clients[origin] = httpx.Client(
                timeout=httpx.Timeout(15.0, connect=3.0),
                limits=httpx.Limits(
                    max_connections=100, max_keepalive_connections=KEEPALIVE_PER_SERVICE
                ),
                follow_redirects=False,
                verify=outbound.tls_context(),
            )
        return client


def _reset_after_fork() -> None:
    # A forked child must not share the parent's sockets: drop (not close) the
    # inherited clients; the child builds its own on first use.
    global _shared_clients, _shared_lock
    _shared_clients = {}
    _shared_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


# -- the client ---------------------------------------------------------------------


class _Attempt:
    """State of one logical call across its attempts."""

    def __init__(self, deadline_at: float) -> None:
        self.deadline_at = deadline_at
        self.count = 0


class BaseClient:
    """A JSON-over-HTTP client of one service at `base_url`.

    Tests pass `transport=` (an `httpx.MockTransport`) or `http=`; otherwise the
    process-wide pooled client of its service (origin) is used. `sleep` is the backoff sleeper and `clock` the
    monotonic clock the deadline is measured on (tests may pass fakes).
    """

    service_name = "service"

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        settings: ClientSettings | None = None,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url
        self.api_key = api_key or ""
        self.settings = settings or ClientSettings()
        self._owns_http = False
        if http is not None:
            self._http = http
        elif transport is not None:
            self._http = httpx.Client(transport=transport, follow_redirects=False)
            self._owns_http = True
        else:
            self._http = shared_http_client(service_origin(base_url))
        # The contract calls' hot path (`_call`) for a plain-http service on the
        # shared pool; httpx carries every other (clients.http1).
        self._fast = http1.pool_for(base_url) if http is None and transport is None else None
        self._sleep = sleep
        self._clock = clock
        # Of the last successful call: for `breaker.record_success(latency_ms=...)`.
        self.last_latency_ms: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.base_url)!r})"

    def close(self) -> None:
        """Close the HTTP client if this instance created it (never the shared one)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public helpers for subclasses --------------------------------------------

    def url(self, path: str) -> str:
        return join_url(self.base_url, path)

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool,
        secrets: Iterable[str] = (),
        deadline: float | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Send one logical call and return its parsed JSON (None for an empty body)."""
        return self._call(
            method,
            path,
            json=json,
            params=params,
            idempotent=idempotent,
            secrets=secrets,
            deadline=deadline,
            idempotency_key=idempotency_key,
        ).data

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool,
        secrets: Iterable[str] = (),
        deadline: float | None = None,
        idempotency_key: str | None = None,
    ) -> ApiResponse:
        """Send one logical call; raise `ServiceError` on any failure.

        Transient failures are retried (at most `max_attempts`, never past the total
        deadline) when the call is `idempotent` (GET/DELETE, or a POST carrying an
        idempotency key); other calls are retried only when the request was never
        sent (connect errors). `secrets` are extra strings (proxy credentials) that
        must never appear in an error message or log line. `deadline` overrides the
        settings' total deadline for this call.
        """
        scrub = self._scrubber(secrets)
        url = self.url(path)
        content = _encode_json(json, scrub) if json is not None else None
        headers = {"Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if idempotency_key:
            # The same on every attempt: the service applies the call once.
            headers["Idempotency-Key"] = idempotency_key
            idempotent = True
        clean_params = {k: v for k, v in (params or {}).items() if v is not None}

        total = self.settings.deadline if deadline is None else deadline
        state = _Attempt(self._clock() + total)

        def attempt() -> ApiResponse:
            state.count += 1
            return self._attempt(method, url, headers, content, clean_params, state, scrub)

        def should_retry(exc: BaseException) -> bool:
            if not isinstance(exc, ServiceError) or not exc.transient:
                return False
            return idempotent or exc.code == "connect_error"

        def wait(rs: tenacity.RetryCallState) -> float:
            delay = self.settings.backoff_s(rs.attempt_number, random.random())
            exc = rs.outcome.exception() if rs.outcome else None
            if isinstance(exc, ServiceError) and exc.retry_after is not None:
                delay = max(delay, exc.retry_after)
            return min(delay, self.settings.backoff_cap)

        def stop(rs: tenacity.RetryCallState) -> bool:
            if rs.attempt_number >= self.settings.max_attempts:
                return True
            exc = rs.outcome.exception() if rs.outcome else None
            # The service asked for a longer pause than we are willing to sleep: give
            # up now and let the caller (and its breaker) wait `retry_after`.
            if (
                isinstance(exc, ServiceError)
                and exc.retry_after is not None
                and exc.retry_after > self.settings.backoff_cap
            ):
                return True
            return self._clock() + (rs.upcoming_sleep or 0.0) >= state.deadline_at

        def before_sleep(rs: tenacity.RetryCallState) -> None:
            exc = rs.outcome.exception() if rs.outcome else None
            logger.warning(
                "%s %s %s failed (%s), retrying in %.2fs (attempt %d of %d)",
                self.service_name,
                method,
                scrub(url),
                exc,
                rs.upcoming_sleep,
                rs.attempt_number,
                self.settings.max_attempts,
                extra={
                    "service": self.service_name,
                    "error_code": getattr(exc, "code", None),
                    "attempt": rs.attempt_number,
                },
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(should_retry),
            stop=stop,
            wait=wait,
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            response: ApiResponse = retrying(attempt)
        except ServiceError as exc:
            exc.attempts = state.count
            raise
        self.last_latency_ms = response.latency_ms
        return response

    # -- internals ------------------------------------------------------------------

    def _scrubber(self, secrets: Iterable[str]) -> Callable[[str], str]:
        hidden = [s for s in (self.api_key, *secrets) if s and len(s) >= 3]

        def scrub(text: str) -> str:
            return hide(text, hidden)

        return scrub

    def _attempt(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        params: dict[str, Any],
        state: _Attempt,
        scrub: Callable[[str], str],
    ) -> ApiResponse:
        started = self._clock()
        timeout = self._timeout(state, started)
        with (
            self._transport_errors(state, scrub),
            self._stream(
                method, url, content=content, params=params, headers=headers, timeout=timeout
            ) as resp,
        ):
            body = self._read_capped(resp, state)
        latency_ms = int((self._clock() - started) * 1000)
        if resp.status_code >= 300:
            raise _error_from_response(resp.status_code, resp.headers, body, scrub)
        return ApiResponse(
            status=resp.status_code,
            data=_parse_success(resp.status_code, body),
            headers=resp.headers,
            latency_ms=latency_ms,
            attempts=state.count,
        )

    def _stream(
        self, method: str, url: str, **request: Any
    ) -> contextlib.AbstractContextManager[httpx.Response | http1.Http1Response]:
        """The answer to one request, by http1 where this client has a pool there."""
        if self._fast is not None:
            return self._fast.stream(method, url, **request)
        return self._http.stream(method, url, **request)

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        content: bytes,
        headers: Mapping[str, str],
        idempotency_key: str | None = None,
        secrets: Iterable[str] = (),
    ) -> RawResponse:
        """Send one request and return whatever status came back, with at most
        `max_response_bytes` of the body (the rest is left unread, not refused).

        For callers that keep the answer as evidence and schedule their own retries
        (webhooks): one attempt, no retry, no status check, no JSON parsing. Failures
        to exchange (refused by the outbound policy, unreachable, timeout, the total
        deadline) raise `ServiceError` with the same codes as `_call`."""
        scrub = self._scrubber(secrets)
        sent = {"Accept": "application/json", "Content-Type": "application/json", **headers}
        if self.api_key:
            sent["Authorization"] = f"Bearer {self.api_key}"
        if idempotency_key:
            sent["Idempotency-Key"] = idempotency_key
        state = _Attempt(self._clock() + self.settings.deadline)
        state.count = 1
        started = self._clock()
        timeout = self._timeout(state, started)
        with (
            self._transport_errors(state, scrub),
            self._http.stream(
                method,
                self.url(path),
                content=content,
                headers=sent,
                timeout=timeout,
            ) as resp,
        ):
            body = self._read_capped(resp, state, truncate=True)
        self.last_latency_ms = int((self._clock() - started) * 1000)
        return RawResponse(
            status=resp.status_code,
            body=body,
            encoding=resp.encoding or "utf-8",
            headers=resp.headers,
            latency_ms=self.last_latency_ms,
        )

    def _timeout(self, state: _Attempt, now: float) -> httpx.Timeout:
        remaining = state.deadline_at - now
        if remaining <= 0:
            raise ServiceError("deadline_exceeded", "no time left for the call", transient=True)
        s = self.settings
        return httpx.Timeout(
            connect=min(s.connect_timeout, remaining),
            read=min(s.read_timeout, remaining),
            write=min(s.read_timeout, remaining),
            pool=min(s.connect_timeout, remaining),
        )

    @contextlib.contextmanager
    def _transport_errors(self, state: _Attempt, scrub: Callable[[str], str]) -> Iterator[None]:
        """Turn httpx's failures inside the block into `ServiceError`."""
        try:
            yield
        except outbound.Refused as exc:
            # The outbound policy refused the target (nothing was dialed): no retry.
            raise ServiceError("refused", scrub(str(exc))) from None
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ServiceError(
                "connect_error", scrub(f"{type(exc).__name__}: {exc}"), transient=True
            ) from None
        except httpx.TimeoutException as exc:
            code = "deadline_exceeded" if self._clock() >= state.deadline_at else "timeout"
            raise ServiceError(
                code, scrub(f"{type(exc).__name__}: {exc}"), transient=True
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            # A misconfigured base URL: no retry will fix it.
            raise ServiceError("invalid_url", scrub(f"{type(exc).__name__}: {exc}")) from None
        except (httpx.TransportError, httpx.TooManyRedirects) as exc:
            raise ServiceError(
                "network_error", scrub(f"{type(exc).__name__}: {exc}"), transient=True
            ) from None

    def _read_capped(
        self,
        resp: httpx.Response | http1.Http1Response,
        state: _Attempt,
        *,
        truncate: bool = False,
    ) -> bytes:
        """The body, at most `max_response_bytes` of it: a longer one is refused
        (`response_too_large`), or with `truncate` cut there and the rest never read."""
        cap = self.settings.max_response_bytes
        declared = resp.headers.get("Content-Length")
        if not truncate and declared and declared.isdigit() and int(declared) > cap:
            raise _too_large(resp.status_code, cap)
        chunks: list[bytes] = []
        size = 0
        # A slow drip never times out a single read: check the total deadline between
        # chunks. The cap counts decoded bytes, so a compression bomb is stopped too.
        try:
            for chunk in resp.iter_bytes():
                size += len(chunk)
                chunks.append(chunk)
                if size > cap and not truncate:
                    raise _too_large(resp.status_code, cap)
                if size >= cap and truncate:
                    break
                if self._clock() >= state.deadline_at:
                    raise ServiceError(
                        "deadline_exceeded",
                        "the response did not arrive within the deadline",
                        status=resp.status_code,
                        transient=True,
                    )
        except httpx.DecodingError:
            raise ServiceError(
                "invalid_response",
                "the response body cannot be decoded (Content-Encoding)",
                status=resp.status_code,
                transient=is_transient_status(resp.status_code),
            ) from None
        return b"".join(chunks)[:cap]


def _too_large(status: int, cap: int) -> ServiceError:
    return ServiceError("response_too_large", f"response body exceeds {cap} bytes", status=status)


def _encode_json(payload: Any, scrub: Callable[[str], str]) -> bytes:
    try:
        return json.dumps(
            payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ServiceError("invalid_request", scrub(f"cannot encode request: {exc}")) from None


def _loads(body: bytes) -> Any:
    # NaN/Infinity are not JSON; a lenient peer may still send them. Map them to null
    # so the value can be sent on (our encoder refuses them) instead of failing a page.
    return json.loads(body.decode("utf-8"), parse_constant=lambda _name: None)


def _parse_success(status: int, body: bytes) -> Any:
    if status == 204 or not body.strip():
        return None
    try:
        return _loads(body)
    except (UnicodeDecodeError, ValueError):
        raise ServiceError(
            "invalid_response", "the response body is not JSON", status=status
        ) from None


def _error_from_response(
    status: int, headers: httpx.Headers, body: bytes, scrub: Callable[[str], str]
) -> ServiceError:
    retry_after = parse_retry_after(headers.get("Retry-After"))
    parsed: Any = None
    if body.strip():
        try:
            parsed = _loads(body)
        except (UnicodeDecodeError, ValueError):
            # An HTML error page from a proxy or a truncated body: still transient when
            # the status says so.
            return ServiceError(
                "invalid_response",
                f"HTTP {status} with a body that is not JSON",
                status=status,
                transient=is_transient_status(status),
                retry_after=retry_after,
            )
    error = parsed.get("error") if isinstance(parsed, dict) else None
    code = f"http_{status}"
    message = ""
    fields: dict[str, Any] | None = None
    detail: dict[str, Any] | None = parsed if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        detail = error
        raw_code = error.get("code")
        if isinstance(raw_code, str) and raw_code and raw_code not in _RESERVED_CODES:
            code = raw_code[:100]
        raw_message = error.get("message")
        if isinstance(raw_message, str):
            message = raw_message
        if isinstance(error.get("fields"), dict):
            fields = error["fields"]
    elif isinstance(error, str):
        message = error
    message = scrub(message)[:_MESSAGE_LIMIT]
    return ServiceError(
        code,
        message,
        status=status,
        transient=is_transient_status(status, code),
        retry_after=retry_after,
        fields=fields,
        body=detail,
    )


def require(data: Any, kind: type, what: str) -> Any:
    """Check the shape of a parsed answer; an unexpected one is `invalid_response`."""
    if not isinstance(data, kind):
        raise ServiceError("invalid_response", f"{what}: expected a JSON {kind.__name__}")
    return data
