"""Connection tests of services (`GET {base_url}/health`) and proxies (a GET of
settings.PROXY_CHECK_URL through the proxy).

Guarded against SSRF by the one outbound policy (mission_control.outbound): only
http(s) targets, no redirects, the host resolved once and checked, and the request
sent to the address that was checked, so a second DNS answer cannot point it elsewhere.

Results are recorded on the row; the error text never carries a secret. Every test
is written to the audit log (who, what, ok/status class/latency) and tests started by
a person are rate-limited per user (settings.CONNECTION_TEST_RATE), whichever entry
point (API, admin, dashboard) started them.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.core.cache import cache
from django.db.models import F
from django.utils import timezone

from audit.context import current_actor, current_user
from audit.log import record as audit_record
from audit.models import AuditLog
from mission_control import outbound
from mission_control.logging import hide, redact
from mission_control.permissions import ADMIN, has_role
from registry import geo
from registry.models import HealthStatus, Proxy, Service

CONNECT_TIMEOUT_S = 3.0
DEADLINE_S = 10.0

IPAddress = outbound.IPAddress
METADATA_ADDRESSES = outbound.METADATA_ADDRESSES
TargetRefused = outbound.Refused


@dataclass(frozen=True)
class Result:
    ok: bool
    status_class: str | None
    latency_ms: int | None
    error: str = ""
    # The first bytes of the answer, when the caller asked for them (geo of a proxy).
    body: bytes = field(default=b"", repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ok": self.ok,
            "status_class": self.status_class,
            "latency_ms": self.latency_ms,
        }
        if self.error:
            data["error"] = self.error
        return data


def check_address(
    ip: IPAddress,
    *,
    allow_private: bool,
    allowed_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None = None,
) -> None:
    """Raise TargetRefused unless a connection test may reach `ip` (the outbound policy)."""
    policy = outbound.Policy(allow_private, tuple(allowed_networks or ()))
    outbound.check_address(ip, policy)


def resolve(host: str, port: int, *, allow_private: bool) -> IPAddress:
    """Resolve `host` once under the outbound policy; the address to connect to."""
    return outbound.resolve(host, port, outbound.current_policy(allow_private=allow_private))


_netloc = outbound.netloc


def _pinned(url: str, *, allow_private: bool) -> tuple[str, str, str]:
    """(url with the checked address as host, Host header, TLS server name)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("invalid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefused(f"scheme {scheme or '(none)'!r} is not http or https")
    if not parts.hostname:
        raise TargetRefused("URL has no host")
    ip = resolve(
        parts.hostname, port or (443 if scheme == "https" else 80), allow_private=allow_private
    )
    host_header = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port:
        host_header += f":{port}"
    pinned = urlunsplit((scheme, _netloc(ip, port), parts.path or "/", parts.query, ""))
    return pinned, host_header, parts.hostname


def _failure(exc: BaseException) -> str:
    """A coarse reason: the details (addresses, resolver and TLS messages) would turn
    the test into a probe of the network behind Mission Control."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ProxyError):
        return "proxy error"
    if isinstance(exc, httpx.ConnectError | OSError):
        return "connection failed"
    return "request failed"


def _status_class(code: int) -> str:
    return f"{code // 100}xx"


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
            text = text.replace(quote(secret, safe=""), "***")
    return redact(text)[:500]


def _request(
    url: str,
    *,
    headers: dict[str, str],
    sni: str,
    proxy: str | None,
    transport: httpx.BaseTransport | None,
    deadline_s: float,
    body_limit: int = 0,
) -> Result:
    """One GET with explicit timeouts, no redirects and a hard total deadline."""
    outcome: list[Result] = []
    timeout = httpx.Timeout(deadline_s, connect=min(CONNECT_TIMEOUT_S, deadline_s))

    def run() -> None:
        started = time.monotonic()
        try:
            with httpx.Client(
                timeout=timeout,
                follow_redirects=False,
                proxy=proxy,
                transport=transport,
                trust_env=False,
            ) as client:
                extensions = {"sni_hostname": sni} if sni and url.startswith("https:") else {}
                request = client.build_request("GET", url, headers=headers, extensions=extensions)
                response = client.send(request, stream=True)
                body = b""
                if body_limit and response.status_code < 300:
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) >= body_limit:
                            break
                response.close()  # the status is the answer; the body is not needed
        except (httpx.HTTPError, OSError, ImportError) as exc:
            latency = round((time.monotonic() - started) * 1000)
            outcome.append(Result(False, None, latency, _failure(exc)))
            return
        latency = round((time.monotonic() - started) * 1000)
        code = response.status_code
        error = "" if code < 300 else f"HTTP {code}"
        if 300 <= code < 400:
            error += " (redirects are not followed)"
        outcome.append(Result(code < 300, _status_class(code), latency, error, body[:body_limit]))

    # httpx timeouts are per operation; a thread gives the whole call one deadline.
    thread = threading.Thread(target=run, name="connection-test", daemon=True)
    thread.start()
    thread.join(deadline_s)
    if not outcome:
        return Result(
            False, None, round(deadline_s * 1000), f"deadline of {deadline_s:g} s exceeded"
        )
    return outcome[0]


def check_service(
    service: Service,
    *,
    transport: httpx.BaseTransport | None = None,
    deadline_s: float = DEADLINE_S,
) -> Result:
    """GET {base_url}/health with the service's bearer key and record the outcome."""
    allow_private = settings.OUTBOUND_ALLOW_PRIVATE
    secrets = [service.api_key]
    try:
        url, host, sni = _pinned(
            service.base_url.rstrip("/") + "/health", allow_private=allow_private
        )
    except TargetRefused as exc:
        result = Result(False, None, None, _scrub(f"refused: {exc}", secrets))
    else:
        headers = {"Host": host, "Accept": "application/json"}
        if service.api_key:
            headers["Authorization"] = f"Bearer {service.api_key}"
        result = _request(
            url, headers=headers, sni=sni, proxy=None, transport=transport, deadline_s=deadline_s
        )
        result = Result(
            result.ok, result.status_class, result.latency_ms, _scrub(result.error, secrets)
        )
    record_service(service, result)
    return result


def record_service(service: Service, result: Result) -> None:
    now = timezone.now()
    if result.ok:
        status = HealthStatus.OK
    elif result.status_class is not None:
        status = HealthStatus.DEGRADED  # it answered, but not with success
    else:
        status = HealthStatus.OFFLINE
    updates: dict[str, Any] = {
        "health_status": status,
        "last_checked_at": now,
        "last_latency_ms": result.latency_ms,
        "last_error": result.error,
        "updated_at": now,
    }
    if result.status_class is not None:
        updates["last_seen_at"] = now
    type(service)._default_manager.filter(pk=service.pk).update(**updates)
    for name, value in updates.items():
        setattr(service, name, value)


def check_proxy(
    proxy: Proxy,
    *,
    transport: httpx.BaseTransport | None = None,
    deadline_s: float = DEADLINE_S,
) -> Result:
    """GET settings.PROXY_CHECK_URL through the proxy and record the outcome."""
    allow_private = settings.OUTBOUND_ALLOW_PRIVATE
    secrets = [proxy.password, proxy.url(with_credentials=True)]
    check_url = settings.PROXY_CHECK_URL
    try:
        if urlsplit(check_url).scheme.lower() not in ("http", "https"):
            raise TargetRefused("PROXY_CHECK_URL must be an http or https URL")
        ip = resolve(proxy.host, proxy.port, allow_private=allow_private)
        auth = ""
        if proxy.username:
            auth = quote(proxy.username, safe="")
            if proxy.password:
                auth += ":" + quote(proxy.password, safe="")
            auth += "@"
        proxy_url = f"{proxy.scheme}://{auth}{_netloc(ip, proxy.port)}"
    except TargetRefused as exc:
        result = Result(False, None, None, _scrub(f"refused: {exc}", secrets))
    else:
        result = _request(
            check_url,
            headers={},
            sni="",
            proxy=proxy_url,
            transport=transport,
            deadline_s=deadline_s,
            body_limit=geo.BODY_LIMIT,
        )
        result = Result(
            result.ok,
            result.status_class,
            result.latency_ms,
            _scrub(result.error, secrets),
            result.body,
        )
    record_proxy(proxy, result)
    geo.record(proxy, result.ok, result.body, timezone.now())  # exit IP/country, mismatch
    return result


def record_proxy(proxy: Proxy, result: Result) -> None:
    now = timezone.now()
    counter = "success_count" if result.ok else "failure_count"
    Proxy.objects.filter(pk=proxy.pk).update(
        last_checked_at=now,
        last_latency_ms=result.latency_ms,
        last_error=hide(result.error, [proxy.password]),
        updated_at=now,
        **{counter: F(counter) + 1},
    )
    proxy.refresh_from_db(
        fields=[
            "last_checked_at",
            "last_latency_ms",
            "last_error",
            "success_count",
            "failure_count",
        ]
    )


_RATE_PERIODS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600}


def _rate() -> tuple[int, int]:
    """(requests, seconds) of settings.CONNECTION_TEST_RATE, e.g. "30/min"."""
    count, _, period = settings.CONNECTION_TEST_RATE.partition("/")
    return int(count), _RATE_PERIODS[period.strip().lower()]


def _over_rate(user_id: int, *, now: float | None = None) -> bool:
    """A fixed-window counter per user in the cache (shared by web processes)."""
    limit, period = _rate()
    window = int(time.time() if now is None else now) // period
    key = f"connection-test:{user_id}:{window}"
    cache.add(key, 0, timeout=period + 1)
    try:
        used = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=period + 1)
        used = 1
    return used > limit


def check_connection(obj: Service | Proxy, **kwargs: Any) -> Result:
    """Test `obj` and audit-log the test; refused past the caller's rate limit."""
    actor, user = current_actor(), current_user()
    # Whatever the entry point (API, admin action, dashboard): admins only, rate-limited.
    if user is not None and not has_role(user, ADMIN):
        result = Result(False, None, None, "refused: connection tests need the admin role")
        _audit(obj, result, refused=True)
        return result
    if actor.user_id is not None and _over_rate(actor.user_id):
        result = Result(False, None, None, "rate limited: too many connection tests")
        _audit(obj, result, refused=True)
        return result
    result = check_proxy(obj, **kwargs) if isinstance(obj, Proxy) else check_service(obj, **kwargs)
    _audit(obj, result, refused=result.error.startswith("refused:"))
    return result


def _audit(obj: Service | Proxy, result: Result, *, refused: bool) -> None:
    # Only what the caller is shown: no URL, address or error text.
    audit_record(
        AuditLog.Action.CONNECTION_TEST,
        obj,
        data={
            "ok": result.ok,
            "status_class": result.status_class,
            "latency_ms": result.latency_ms,
            "refused": refused,
        },
    )
