"""Client of the Worker API v1 (docs/contracts/worker-api.md): sessions, jobs, results."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from orchestrator.clients.base import (
    NOT_TRANSIENT_5XX_CODES,
    BaseClient,
    ClientSettings,
    ServiceError,
    parse_datetime,
    require,
    url_secrets,
)

if TYPE_CHECKING:
    from registry.config import Config
    from registry.models import Worker


@dataclass(frozen=True)
class WorkerHealth:
    status: str
    version: str
    providers: list[str]
    max_sessions: int | None
    active_sessions: int | None
    message: str = ""  # why the worker says it is degraded, when it says


@dataclass(frozen=True)
class ProxySpec:
    """The proxy a session is bound to. `url` carries credentials: kept out of repr."""

    id: str
    type: str
    url: str = field(repr=False)
    country: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "url": self.url, "country": self.country}


@dataclass(frozen=True)
class RemoteSession:
    id: str
    session_key: str
    status: str
    phase: str
    provider: str
    proxy_id: str | None
    job_id: str | None
    created_at: dt.datetime | None
    last_activity_at: dt.datetime | None
    error_code: str | None
    error_message: str | None
    provider_session_id: str = ""
    provider_inspect_url: str = ""


@dataclass(frozen=True)
class RemoteJob:
    id: str
    job_key: str
    session_id: str
    status: str
    total: int
    done: int
    failed: int
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    error_code: str | None
    error_message: str | None

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class Result:
    item_id: str
    url: str
    status: str
    http_status: int | None
    fetched_at: dt.datetime | None
    final_url: str | None
    data: Any
    error_code: str | None
    error_message: str | None
    # worker-api.md v1.1: an error result's evidence, as received (scrub before storing).
    snapshot: Any = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class ResultsPage:
    results: list[Result]
    next_cursor: str | None
    job_status: str


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else (str(value) if value is not None else default)


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _opt_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _error(value: Any) -> tuple[str | None, str | None]:
    if isinstance(value, dict):
        return _opt_str(value.get("code")), _opt_str(value.get("message"))
    if isinstance(value, str) and value:
        return value, None
    return None, None


def _required_id(data: dict[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if value is None or value == "":
        raise ServiceError("invalid_response", f"{what} without {key!r}")
    return _str(value)


def parse_session(data: Any) -> RemoteSession:
    data = require(data, dict, "session")
    code, message = _error(data.get("error"))
    return RemoteSession(
        id=_required_id(data, "id", "session"),
        session_key=_str(data.get("session_key")),
        status=_str(data.get("status")),
        phase=_str(data.get("phase")),
        provider=_str(data.get("provider")),
        proxy_id=_opt_str(data.get("proxy_id")),
        job_id=_opt_str(data.get("job_id")),
        created_at=parse_datetime(data.get("created_at")),
        last_activity_at=parse_datetime(data.get("last_activity_at")),
        error_code=code,
        error_message=message,
        provider_session_id=_str(data.get("provider_session_id"))[:128],
        provider_inspect_url=_inspect_url(data.get("provider_inspect_url")),
    )


def _inspect_url(value: Any) -> str:
    """The provider's inspector link, kept only when it is an http(s) URL."""
    url = _str(value)
    if len(url) > 2000 or not url.lower().startswith(("https://", "http://")):
        return ""
    return url


def parse_job(data: Any) -> RemoteJob:
    data = require(data, dict, "job")
    progress = data.get("progress") if isinstance(data.get("progress"), dict) else {}
    code, message = _error(data.get("error"))
    return RemoteJob(
        id=_required_id(data, "id", "job"),
        job_key=_str(data.get("job_key")),
        session_id=_str(data.get("session_id")),
        status=_str(data.get("status")),
        total=_opt_int(progress.get("total")) or 0,
        done=_opt_int(progress.get("done")) or 0,
        failed=_opt_int(progress.get("failed")) or 0,
        started_at=parse_datetime(data.get("started_at")),
        finished_at=parse_datetime(data.get("finished_at")),
        error_code=code,
        error_message=message,
    )


def parse_result(data: Any) -> Result:
    data = require(data, dict, "result")
    code, message = _error(data.get("error"))
    return Result(
        item_id=_required_id(data, "item_id", "result"),
        url=_str(data.get("url")),
        status=_str(data.get("status")),
        http_status=_opt_int(data.get("http_status")),
        fetched_at=parse_datetime(data.get("fetched_at")),
        final_url=_opt_str(data.get("final_url")),
        data=data.get("data"),
        error_code=code,
        error_message=message,
        snapshot=data.get("snapshot") if data.get("status") == "error" else None,
    )


def _seg(value: str) -> str:
    """One path segment: ids from a remote service never change the path."""
    return quote(str(value), safe="")


class WorkerClient(BaseClient):
    service_name = "worker"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Every call but POST /sessions (`open_session`): there a 502 `provider_error`
        is the session's failure; anywhere else the contract calls a 5xx transient,
        a fault of the worker that costs no mission anything."""
        try:
            return super()._request(method, path, **kwargs)
        except ServiceError as exc:
            if exc.code in NOT_TRANSIENT_5XX_CODES and (exc.status or 0) >= 500:
                exc.transient = True
            raise

    @classmethod
    def for_worker(
        cls,
        worker: Worker,
        cfg: Config | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
    ) -> WorkerClient:
        settings = ClientSettings.from_config(cfg) if cfg is not None else ClientSettings()
        return cls(worker.base_url, worker.api_key, settings, transport=transport, http=http)

    def health(self) -> WorkerHealth:
        data = require(self._request("GET", "/health", idempotent=True), dict, "health")
        capacity = data.get("capacity") if isinstance(data.get("capacity"), dict) else {}
        providers = data.get("providers")
        return WorkerHealth(
            status=_str(data.get("status"), "ok"),
            version=_str(data.get("version")),
            providers=[_str(p) for p in providers] if isinstance(providers, list) else [],
            max_sessions=_opt_int(capacity.get("max_sessions")),
            active_sessions=_opt_int(capacity.get("active_sessions")),
            message=_error(data.get("error"))[1] or "",
        )

    def open_session(
        self,
        session_key: str,
        *,
        provider: str = "local",
        proxy: ProxySpec | None = None,
        engine: str = "http",
        timeout_s: int = 900,
        labels: dict[str, str] | None = None,
    ) -> tuple[RemoteSession, bool]:
        """Open (or find, by `session_key`) a session; `created` is False when the
        worker already had it. Raises ServiceError `capacity_exhausted` (409) and
        `provider_error` (502, not transient: rotate the proxy)."""
        payload = {
            "session_key": session_key,
            "provider": provider,
            "proxy": proxy.as_json() if proxy else None,
            "engine": engine,
            "timeout_s": timeout_s,
            "labels": labels or {},
        }
        secrets = url_secrets(proxy.url) if proxy else []
        reply = self._call("POST", "/sessions", json=payload, idempotent=True, secrets=secrets)
        return parse_session(reply.data), reply.status == 201

    def list_sessions(self) -> list[RemoteSession]:
        data = self._request("GET", "/sessions", idempotent=True)
        if isinstance(data, dict):
            data = data.get("sessions")
        return [parse_session(s) for s in require(data, list, "sessions")]

    def get_session(self, session_id: str) -> RemoteSession:
        return parse_session(self._request("GET", f"/sessions/{_seg(session_id)}", idempotent=True))

    def close_session(self, session_id: str) -> None:
        """Close a session; one already closed or unknown is fine."""
        try:
            self._request("DELETE", f"/sessions/{_seg(session_id)}", idempotent=True)
        except ServiceError as exc:
            if exc.status != 404:
                raise

    def start_job(
        self,
        session_id: str,
        job_key: str,
        items: list[tuple[str, str]],
        *,
        timeout_s: int = 60,
        wait_until: str = "load",
        selectors: dict[str, str] | None = None,
        options: dict[str, Any] | None = None,
    ) -> RemoteJob:
        """Start (or find, by `job_key`) a job of `(item_id, url)` items; `options` adds
        the v1.1 options (`delay_ms`, `respect_robots`, `headers`) and `selectors` (the
        site's extraction rules) travel in them too (worker API v1.1). Raises
        ServiceError `session_busy`/`session_not_ready` (409), `session_not_found`."""
        merged: dict[str, Any] = {**(options or {}), "timeout_s": timeout_s}
        merged["wait_until"] = wait_until
        if selectors:
            merged["selectors"] = dict(selectors)
        payload = {
            "job_key": job_key,
            "items": [{"item_id": str(item_id), "url": url} for item_id, url in items],
            "options": merged,
        }
        data = self._request(
            "POST", f"/sessions/{_seg(session_id)}/jobs", json=payload, idempotent=True
        )
        return parse_job(data)

    def get_job(self, job_id: str) -> RemoteJob:
        return parse_job(self._request("GET", f"/jobs/{_seg(job_id)}", idempotent=True))

    def job_results(self, job_id: str, cursor: str | None = None, limit: int = 500) -> ResultsPage:
        data = self._request(
            "GET",
            f"/jobs/{_seg(job_id)}/results",
            params={"cursor": cursor, "limit": max(1, min(1000, limit))},
            idempotent=True,
        )
        data = require(data, dict, "results page")
        results = require(data.get("results", []), list, "results")
        next_cursor = data.get("next_cursor")
        return ResultsPage(
            results=[parse_result(r) for r in results],
            next_cursor=_opt_str(next_cursor),
            job_status=_str(data.get("job_status")),
        )
