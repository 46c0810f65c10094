"""Client of the external ETL system of record for scrape runs (docs/contracts/etl-api.md).

Optional: `get_etl_client()` is None when `ETL_API_ENDPOINT` is unset, and callers
then skip every ETL step. The real service is not ours and its field names vary, so
every answer goes through the normalizers here (`_id`/`id`, `createdAt`/`created_at`,
`updatedAt`/`updated_at`, `runId`/`run_id`; lists bare or under `runs`/`items`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import httpx

from orchestrator.clients.base import (
    BaseClient,
    ClientSettings,
    ServiceError,
    join_url,
    parse_datetime,
    require,
)

if TYPE_CHECKING:
    from registry.config import Config

ITEM_UPDATE_BATCH = 500
_RUN_WRAPPERS = ("run", "scrapeRun", "scrape_run", "data")
_LIST_KEYS = ("runs", "items", "data", "results")


@dataclass(frozen=True)
class EtlItem:
    id: str
    url: str
    done: bool
    status: str


@dataclass(frozen=True)
class EtlRun:
    id: str
    domain: str
    status: str
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    items: list[EtlItem] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")

    def pending_items(self) -> list[EtlItem]:
        return [item for item in self.items if not item.done]


@dataclass(frozen=True)
class EtlItemUpdate:
    id: str
    done: bool
    status: str
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"id": self.id, "done": self.done, "status": self.status}
        if self.error is not None:
            payload["error"] = self.error
        return payload


@dataclass(frozen=True)
class EtlRunStats:
    total: int
    done: int
    failed: int
    duration_s: float


def build_api_url(endpoint: str, path: str, params: Mapping[str, Any] | None = None) -> str:
    """`endpoint` joined with `path` (one slash between them, never doubled or lost),
    plus `params` as a query string; None values are left out."""
    url = join_url(endpoint, path)
    query = {k: v for k, v in (params or {}).items() if v is not None}
    if query:
        url += ("&" if "?" in url else "?") + urlencode(query, doseq=True)
    return url


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = data.get(key)
        if value is not None:
            return value
    return None


def _unwrap_run(data: Any) -> dict[str, Any]:
    if isinstance(data, dict) and _first(data, "id", "_id", "runId", "run_id") is None:
        for key in _RUN_WRAPPERS:
            inner = data.get(key)
            if isinstance(inner, dict):
                return inner
    return require(data, dict, "run")


def _unwrap_list(data: Any, what: str) -> list[Any]:
    if isinstance(data, dict):
        for key in _LIST_KEYS:
            if isinstance(data.get(key), list):
                return list(data[key])
    return list(require(data, list, what))


def normalize_item(data: Any) -> EtlItem:
    data = require(data, dict, "run item")
    item_id = _first(data, "id", "_id", "itemId", "item_id")
    if item_id is None:
        raise ServiceError("invalid_response", "run item without an id")
    status = data.get("status")
    done = data.get("done")
    if not isinstance(done, bool):
        done = status in ("done", "completed", "ok")
    return EtlItem(
        id=str(item_id),
        url=str(data.get("url") or ""),
        done=done,
        status=str(status) if status is not None else ("done" if done else "pending"),
    )


def normalize_run(data: Any) -> EtlRun:
    """One run from any of the shapes the ETL service is known to answer."""
    run = _unwrap_run(data)
    run_id = _first(run, "id", "_id", "runId", "run_id")
    if run_id is None:
        raise ServiceError("invalid_response", "run without an id")
    items = _first(run, "items", "urls")
    return EtlRun(
        id=str(run_id),
        domain=str(run.get("domain") or ""),
        status=str(run.get("status") or "pending"),
        created_at=parse_datetime(_first(run, "created_at", "createdAt")),
        updated_at=parse_datetime(_first(run, "updated_at", "updatedAt")),
        items=[normalize_item(i) for i in items if isinstance(i, dict)]
        if isinstance(items, list)
        else [],
    )


def normalize_runs(data: Any) -> list[EtlRun]:
    """A list of runs, newest first (the service should sort them; not trusted to)."""
    runs = [normalize_run(r) for r in _unwrap_list(data, "runs")]
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(runs, key=lambda r: r.created_at or oldest, reverse=True)


def _chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _update_json(update: Mapping[str, Any] | EtlItemUpdate) -> dict[str, Any]:
    if isinstance(update, EtlItemUpdate):
        return update.as_json()
    return dict(update)


class EtlClient(BaseClient):
    service_name = "etl"

    def create_scrape_run(
        self, domain: str, urls: Sequence[str] | None = None, *, key: str | None = None
    ) -> EtlRun:
        # Without an idempotency key a retry after the request was sent could create a
        # second run, so only connect errors are retried then (base rule).
        payload: dict[str, Any] = {"domain": domain}
        if urls is not None:
            payload["urls"] = list(urls)
        return normalize_run(
            self._request(
                "POST", "/scrape-runs", json=payload, idempotent=False, idempotency_key=key
            )
        )

    def fetch_scrape_run(self, run_id: str) -> EtlRun:
        return normalize_run(
            self._request("GET", f"/scrape-runs/{quote(str(run_id), safe='')}", idempotent=True)
        )

    def list_scrape_runs(
        self, domain: str | None = None, status: str | None = None, limit: int | None = None
    ) -> list[EtlRun]:
        data = self._request(
            "GET",
            "/scrape-runs",
            params={"domain": domain, "status": status, "limit": limit},
            idempotent=True,
        )
        runs = normalize_runs(data)
        if domain:
            # A service that ignores the filter must not hand us another domain's run.
            from registry.models import normalize_domain

            wanted = normalize_domain(domain)
            runs = [r for r in runs if not r.domain or normalize_domain(r.domain) == wanted]
        return runs[:limit] if limit else runs

    def get_latest_run_for_domain(self, domain: str) -> EtlRun | None:
        runs = self.list_scrape_runs(domain, limit=1)
        return runs[0] if runs else None

    def update_scrape_run_items(
        self,
        run_id: str,
        updates: Sequence[Mapping[str, Any] | EtlItemUpdate],
        *,
        batch_size: int = ITEM_UPDATE_BATCH,
        key: str | None = None,
    ) -> int:
        """Send item updates in batches of `batch_size` (one request per batch, never
        per item); return how many the service says it updated. Setting an item's
        state is idempotent, so every batch is retried on transient failures."""
        path = f"/scrape-runs/{quote(str(run_id), safe='')}/items"
        updated = 0
        for n, batch in enumerate(_chunks(list(updates), max(1, batch_size))):
            data = self._request(
                "PATCH",
                path,
                json=[_update_json(u) for u in batch],
                idempotent=True,
                idempotency_key=f"{key}:{n}" if key else None,
            )
            count = data.get("updated") if isinstance(data, dict) else None
            updated += (
                count if isinstance(count, int) and not isinstance(count, bool) else len(batch)
            )
        return updated

    def finalize_scrape_run(
        self, run_id: str, stats: EtlRunStats | Mapping[str, Any], *, key: str | None = None
    ) -> EtlRun:
        payload = dataclasses.asdict(stats) if isinstance(stats, EtlRunStats) else dict(stats)
        data = self._request(
            "POST",
            f"/scrape-runs/{quote(str(run_id), safe='')}/finalize",
            json=payload,
            idempotent=True,
            idempotency_key=key,
        )
        if data is None:
            # An empty answer is a success; its status is unknown ("") to us.
            return EtlRun(id=str(run_id), domain="", status="", created_at=None, updated_at=None)
        if (
            isinstance(data, dict)
            and _first(data, "id", "_id", "runId", "run_id") is None
            and not any(isinstance(data.get(k), dict) for k in _RUN_WRAPPERS)
        ):
            data = {**data, "id": run_id}
        return normalize_run(data)


def get_etl_client(
    cfg: Config | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    http: httpx.Client | None = None,
) -> EtlClient | None:
    """The ETL client, or None when `ETL_API_ENDPOINT` is unset (skip every ETL step)."""
    from django.conf import settings

    endpoint = getattr(settings, "ETL_API_ENDPOINT", "") or ""
    if not endpoint.strip():
        return None
    client_settings = ClientSettings.from_config(cfg) if cfg is not None else ClientSettings()
    return EtlClient(
        endpoint.strip(),
        getattr(settings, "ETL_API_KEY", "") or "",
        client_settings,
        transport=transport,
        http=http,
    )
