"""The engine's hot path to its services: HTTP/1.1 keep-alive on the standard library's
`http.client`, for plain `http://` origins.

Every mission makes six contract calls (open, job, results, batch, complete, close).
Through `httpx.Client` each cost about 400 us of CPU on loopback, against about 150 us
for the same exchange on `http.client`; in the engine, where eight call threads share
one interpreter, httpx's extra work also held the GIL longer: on this path the in-process
pipeline delivered 19% more items per second for 20% less CPU per mission, in every
alternated pair (docs/performance.md, round 7). So `BaseClient` sends its calls to
a service here when it uses the process-wide pool (no test transport or client was
given), the origin is `http://`, and no proxy is set in the environment; `https://`,
proxies and injected clients keep going through httpx.

The exchange behaves as httpx's does where the client can tell: the same exception
classes (`httpx.ConnectError`, `ReadTimeout`, `RemoteProtocolError`, `DecodingError`,
...), so `BaseClient` maps failures in one place; `gzip` and `deflate` answers decoded
chunk by chunk (at most `CHUNK` bytes out per step, so the caller's size cap stops a
compression bomb); a pooled connection the server has closed is dropped before reuse.
"""

from __future__ import annotations

import functools
import http.client
import os
import re
import select
import threading
import urllib.request
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx

CHUNK = 65536
# Idle keep-alive connections kept per service and process (here and in httpx's pools):
# enough for every call thread of the process at once.
KEEPALIVE_PER_SERVICE = 16
ACCEPT_ENCODING = "gzip, deflate"
# A request target that needs no percent-encoding (ids, cursors, query strings we
# built): sent as it is. Anything else is encoded as httpx would (`httpx.URL`).
_PLAIN_TARGET = re.compile(r"[A-Za-z0-9\-._~/%:@!$&'()*+,;=?]*")


class Http1Response:
    """What `BaseClient` reads of an answer: `status_code`, `headers` and the decoded
    body in chunks (`iter_bytes`)."""

    def __init__(self, raw: http.client.HTTPResponse) -> None:
        self._raw = raw
        self.status_code = raw.status
        self.headers = httpx.Headers(raw.getheaders())

    def iter_bytes(self) -> Iterator[bytes]:
        decoder = _decoder(self.headers.get("Content-Encoding", ""))
        while True:
            chunk = _read(self._raw)
            if not chunk:
                break
            yield from decoder.feed(chunk)
        yield from decoder.flush()

    def release(self) -> bool:
        """Close the answer; True if it was read to its end on a connection that stays
        open, which can then carry another request."""
        raw = self._raw
        finished = raw.isclosed() or raw.length == 0
        raw.close()
        return finished and not raw.will_close


class Http1Pool:
    """Keep-alive connections to one `http://host:port`, each used by one thread at a
    time. Thread-safe; after a fork the child starts with none (`_reset_after_fork`)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    @contextmanager
    def stream(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None,
        params: Mapping[str, Any],
        headers: Mapping[str, str],
        timeout: httpx.Timeout,
    ) -> Iterator[Http1Response]:
        conn = self._checkout(timeout)
        response: Http1Response | None = None
        try:
            response = _exchange(conn, method, _target(url, params), content, headers, timeout)
            yield response
        finally:
            if response is not None and response.release():
                self._checkin(conn)
            else:
                conn.close()

    def _checkout(self, timeout: httpx.Timeout) -> http.client.HTTPConnection:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if _still_open(conn):
                    return conn
                conn.close()
        return _connect(self.host, self.port, timeout)

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < KEEPALIVE_PER_SERVICE:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


_pools: dict[tuple[str, int], Http1Pool] = {}
_pools_lock = threading.Lock()


def pool_for(base_url: str) -> Http1Pool | None:
    """The process-wide pool of `base_url`'s origin, or None where httpx must carry the
    calls: not `http://`, or a proxy set in the environment (httpx honours it)."""
    try:
        parts = urlsplit(base_url.strip())
        host, port = parts.hostname, parts.port or 80
    except ValueError:
        return None
    if parts.scheme.lower() != "http" or not host or _proxied(host):
        return None
    key = (host, port)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = Http1Pool(host, port)
        return pool


# The environment that decides whether an http:// call goes through a proxy.
_PROXY_VARS = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY")


def _proxied(host: str) -> bool:
    # Read per client, so cached per value of those variables: reading the whole
    # environment (`getproxies`) costs more than a call's own work.
    return _proxied_under(host, tuple(os.environ.get(name) for name in _PROXY_VARS))


@functools.lru_cache(maxsize=256)
def _proxied_under(host: str, _environment: tuple[str | None, ...]) -> bool:
    proxies = urllib.request.getproxies()
    wanted = proxies.get("http") or proxies.get("all")
    return bool(wanted) and not urllib.request.proxy_bypass(host)


def _reset_after_fork() -> None:
    # A forked child must not share the parent's sockets: drop (not close) them.
    global _pools, _pools_lock
    _pools = {}
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


# -- one exchange -------------------------------------------------------------------


def _connect(host: str, port: int, timeout: httpx.Timeout) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection(host, port, timeout=timeout.connect)
    try:
        conn.connect()
    except TimeoutError as exc:
        conn.close()
        raise httpx.ConnectTimeout(str(exc) or "timed out connecting") from None
    except OSError as exc:
        conn.close()
        raise httpx.ConnectError(str(exc)) from None
    return conn


def _exchange(
    conn: http.client.HTTPConnection,
    method: str,
    target: str,
    content: bytes | None,
    headers: Mapping[str, str],
    timeout: httpx.Timeout,
) -> Http1Response:
    assert conn.sock is not None
    try:
        conn.sock.settimeout(timeout.write)
        conn.putrequest(method, target, skip_accept_encoding=True)
        conn.putheader("Accept-Encoding", ACCEPT_ENCODING)
        for name, value in headers.items():
            conn.putheader(name, value)
        if content is not None or method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(content or b"")))
        conn.endheaders(content or None)
    except TimeoutError as exc:
        raise httpx.WriteTimeout(str(exc) or "timed out sending") from None
    except OSError as exc:
        raise httpx.WriteError(str(exc)) from None
    except (ValueError, http.client.HTTPException) as exc:
        # What http.client refuses to send (a line break in a header value).
        raise httpx.LocalProtocolError(f"{type(exc).__name__}: {exc}") from None
    try:
        conn.sock.settimeout(timeout.read)
        return Http1Response(conn.getresponse())
    except TimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or "timed out reading") from None
    except (http.client.HTTPException, OSError) as exc:
        raise _read_failure(exc) from None


def _read(raw: http.client.HTTPResponse) -> bytes:
    try:
        chunk = raw.read1(CHUNK)
    except TimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or "timed out reading") from None
    except (http.client.HTTPException, OSError, ValueError) as exc:
        raise _read_failure(exc) from None
    if not chunk and raw.length:
        # `read1` ends quietly where the server closed before the declared length.
        raise httpx.RemoteProtocolError(
            f"peer closed connection without sending complete message body ({raw.length} "
            "bytes missing)"
        )
    return chunk


def _read_failure(exc: Exception) -> httpx.TransportError:
    if isinstance(exc, http.client.HTTPException | ValueError):
        # Closed without an answer, a cut body, a malformed status line or header.
        return httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}")
    return httpx.ReadError(str(exc))


def _target(url: str, params: Mapping[str, Any]) -> str:
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if params:
        query = str(httpx.QueryParams(params))
        target += ("&" if parts.query else "?") + query
    if _PLAIN_TARGET.fullmatch(target):
        return target
    return httpx.URL(url, params=params or None).raw_path.decode("ascii")


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle connection is reusable while nothing is there to read: a readable idle
    socket means the server closed it (or sent what nobody asked for). `poll`, not
    `select`: a descriptor past 1024 is fine."""
    sock = conn.sock
    if sock is None:
        return False
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


# -- content decoding ---------------------------------------------------------------


class _Identity:
    def feed(self, chunk: bytes) -> Iterator[bytes]:
        yield chunk

    def flush(self) -> Iterator[bytes]:
        yield from ()


class _Zlib:
    """gzip or deflate (zlib-wrapped, or raw as some servers send it), at most `CHUNK`
    decoded bytes per step."""

    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._inflate = zlib.decompressobj(wbits)
        self._started = False

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        data = chunk
        while data:
            try:
                out = self._inflate.decompress(data, CHUNK)
            except zlib.error as exc:
                if self._started or self._wbits != zlib.MAX_WBITS:
                    raise httpx.DecodingError(str(exc)) from None
                self._wbits = -zlib.MAX_WBITS  # deflate without the zlib header
                self._inflate = zlib.decompressobj(self._wbits)
                continue
            self._started = True
            if out:
                yield out
            data = self._inflate.unconsumed_tail

    def flush(self) -> Iterator[bytes]:
        try:
            rest = self._inflate.flush()
        except zlib.error as exc:
            raise httpx.DecodingError(str(exc)) from None
        if rest:
            yield rest


def _decoder(encoding: str) -> _Identity | _Zlib:
    value = encoding.strip().lower()
    if value == "gzip" or value == "x-gzip":
        return _Zlib(zlib.MAX_WBITS | 16)
    if value == "deflate":
        return _Zlib(zlib.MAX_WBITS)
    # identity, or one we never asked for: passed on undecoded, as httpx does.
    return _Identity()
