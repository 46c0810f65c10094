"""The `browserbase` provider of the local worker: remote Chromium sessions rented from
Browserbase (https://docs.browserbase.com), driven through the official SDK.

Configured by settings read from the environment: `BROWSERBASE_API_KEY` (a secret:
never logged, never in an answer; or `BROWSERBASE_API_KEY_FILE`), `BROWSERBASE_PROJECT_ID`,
`BROWSERBASE_REGION` and `BROWSERBASE_BASE_URL` (default: the real service; tests point
it at a fake on loopback). Every failure of Browserbase turns
into one `ProviderFault` whose `kind` says what it means for us: `capacity` (429, plan
limits: a full worker, never a mission's fault), `auth` (a wrong key: the worker is
degraded), `unavailable` (5xx, timeouts, connect errors: transient infrastructure).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from django.conf import settings as django_settings

log = logging.getLogger(__name__)
NAME = "browserbase"
# A proxy of this type is one of Browserbase's own managed residential proxies.
MANAGED_PROXY_TYPE = "browserbase"
METADATA_KEY = "mc_session_key"
REQUEST_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 60, 21_600


class ProviderFault(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Settings:
    api_key: str
    project_id: str
    base_url: str | None
    region: str | None


@dataclass(frozen=True)
class RemoteSession:
    id: str
    connect_url: str
    status: str


def settings() -> Settings | None:
    """The provider's settings, or None when the key or the project is missing."""
    key = (getattr(django_settings, "BROWSERBASE_API_KEY", "") or "").strip()
    project = (getattr(django_settings, "BROWSERBASE_PROJECT_ID", "") or "").strip()
    if not key or not project:
        return None
    return Settings(
        api_key=key,
        project_id=project,
        base_url=(getattr(django_settings, "BROWSERBASE_BASE_URL", "") or "").strip() or None,
        region=(getattr(django_settings, "BROWSERBASE_REGION", "") or "").strip() or None,
    )


def configured() -> bool:
    return settings() is not None


def _client(cfg: Settings) -> Any:
    from browserbase import Browserbase

    # No retries inside the SDK: Mission Control owns the retry policy.
    return Browserbase(
        api_key=cfg.api_key, base_url=cfg.base_url, max_retries=0, timeout=REQUEST_TIMEOUT
    )


def proxies_for(proxy_url: str, proxy_type: str, country: str) -> list[dict[str, Any]] | None:
    """Browserbase's `proxies` parameter for the proxy the orchestrator allocated."""
    if proxy_type == MANAGED_PROXY_TYPE:
        managed: dict[str, Any] = {"type": "browserbase"}
        if country:
            managed["geolocation"] = {"country": country.upper()}
        return [managed]
    if not proxy_url:
        return None
    parts = urlsplit(proxy_url)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    external: dict[str, Any] = {
        "type": "external",
        "server": f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else ""),
    }
    if parts.username:
        external["username"] = unquote(parts.username)
    if parts.password:
        external["password"] = unquote(parts.password)
    return [external]


def _fault(exc: Exception) -> ProviderFault:
    """One ProviderFault for any SDK error; messages never carry the key."""
    import browserbase

    if isinstance(exc, browserbase.RateLimitError):
        return ProviderFault("capacity", "Browserbase: concurrency limit reached (HTTP 429).")
    if isinstance(exc, browserbase.AuthenticationError | browserbase.PermissionDeniedError):
        status = getattr(exc, "status_code", "")
        return ProviderFault("auth", f"Browserbase refused the API key (HTTP {status}).")
    if isinstance(exc, browserbase.APIStatusError):
        status = exc.status_code
        if status == 402:
            return ProviderFault("capacity", "Browserbase: plan limit reached (HTTP 402).")
        if status >= 500 or status == 408:
            return ProviderFault("unavailable", f"Browserbase unavailable (HTTP {status}).")
        return ProviderFault("rejected", f"Browserbase rejected the session (HTTP {status}).")
    if isinstance(exc, browserbase.APIConnectionError):
        return ProviderFault("unavailable", "Browserbase unreachable (connection or timeout).")
    return ProviderFault("unavailable", f"Browserbase: {type(exc).__name__}.")


def create_session(
    session_key: str,
    *,
    timeout_s: int,
    proxy_url: str = "",
    proxy_type: str = "",
    proxy_country: str = "",
) -> RemoteSession:
    """A new Browserbase session tagged with our `session_key`. Raises ProviderFault."""
    cfg = settings()
    if cfg is None:
        raise ProviderFault("auth", "Browserbase is not configured on this worker.")
    params: dict[str, Any] = {
        "project_id": cfg.project_id,
        "keep_alive": True,
        "api_timeout": max(MIN_TIMEOUT_S, min(MAX_TIMEOUT_S, timeout_s)),
        "user_metadata": {METADATA_KEY: session_key},
    }
    if cfg.region:
        params["region"] = cfg.region
    proxies = proxies_for(proxy_url, proxy_type, proxy_country)
    if proxies:
        params["proxies"] = proxies
    try:
        with _client(cfg) as client:
            created = client.sessions.create(**params)
    except Exception as exc:
        raise _fault(exc) from None
    return RemoteSession(id=created.id, connect_url=created.connect_url, status=created.status)


def inspector_url(remote_id: str) -> str:
    """The session's live inspector (`GET /v1/sessions/{id}/debug`: its
    `debuggerFullscreenUrl`, else `debuggerUrl`), or "" when Browserbase gives none now:
    a missing link never fails a session. Only an http(s) URL is kept."""
    cfg = settings()
    if cfg is None:
        return ""
    try:
        with _client(cfg) as client:
            live = client.sessions.debug(remote_id)
    except Exception as exc:
        log.info("no inspector link for %s: %s", remote_id, _fault(exc).message)
        return ""
    url = str(live.debugger_fullscreen_url or live.debugger_url or "")
    if urlsplit(url).scheme not in ("http", "https") or len(url) > 2000:
        return ""
    return url


def release_session(remote_id: str) -> None:
    """Ask Browserbase to end a session (`REQUEST_RELEASE`). Raises ProviderFault."""
    cfg = settings()
    if cfg is None:
        raise ProviderFault("auth", "Browserbase is not configured on this worker.")
    try:
        with _client(cfg) as client:
            client.sessions.update(remote_id, status="REQUEST_RELEASE", project_id=cfg.project_id)
    except Exception as exc:
        raise _fault(exc) from None


def running_sessions() -> list[tuple[str, str]]:
    """(Browserbase id, our session_key) of the running sessions that carry our tag."""
    cfg = settings()
    if cfg is None:
        return []
    try:
        with _client(cfg) as client:
            listed = client.sessions.list(status="RUNNING")
    except Exception as exc:
        raise _fault(exc) from None
    found = []
    for remote in listed:
        key = (remote.user_metadata or {}).get(METADATA_KEY)
        if isinstance(key, str) and remote.project_id == cfg.project_id:
            found.append((remote.id, key))
    return found
