"""Client of the Writer API v1 (docs/contracts/writer-api.md): batches of records."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from orchestrator.clients.base import BaseClient, ClientSettings, ServiceError, require

if TYPE_CHECKING:
    from registry.config import Config
    from registry.models import Writer


@dataclass(frozen=True)
class WriterHealth:
    status: str
    version: str
    max_batch_records: int | None
    capabilities: tuple[str, ...] = ()

    @property
    def read_back(self) -> bool:
        return "read_back" in self.capabilities


@dataclass(frozen=True)
class RecordsPage:
    records: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class BatchAck:
    batch_id: str
    stored: int
    duplicates: int
    # True when the writer had already seen this batch_key.
    duplicate: bool


@dataclass(frozen=True)
class CompleteAck:
    mission_id: str
    stored_records: int


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return default


class WriterClient(BaseClient):
    service_name = "writer"

    @classmethod
    def for_writer(
        cls,
        writer: Writer,
        cfg: Config | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
    ) -> WriterClient:
        settings = ClientSettings.from_config(cfg) if cfg is not None else ClientSettings()
        return cls(writer.base_url, writer.api_key, settings, transport=transport, http=http)

    def health(self) -> WriterHealth:
        data = require(self._request("GET", "/health", idempotent=True), dict, "health")
        limit = data.get("max_batch_records")
        return WriterHealth(
            status=str(data.get("status") or "ok"),
            version=str(data.get("version") or ""),
            max_batch_records=_int(limit) if limit is not None else None,
            capabilities=tuple(
                str(c) for c in data.get("capabilities") or () if isinstance(c, str)
            ),
        )

    def write_batch(
        self, batch_key: str, mission: dict[str, Any], records: list[dict[str, Any]]
    ) -> BatchAck:
        """Store `records` once per `batch_key`. Raises ServiceError `batch_too_large`
        (413: split and resend) and `invalid_records` (422, with `fields`); both
        permanent. 503/429 are retried within the deadline."""
        data = self._request(
            "POST",
            "/batches",
            json={"batch_key": batch_key, "mission": mission, "records": records},
            idempotent=True,
        )
        data = require(data, dict, "batch answer")
        if data.get("batch_id") in (None, ""):
            raise ServiceError("invalid_response", "batch answer without 'batch_id'")
        return BatchAck(
            batch_id=str(data["batch_id"]),
            stored=_int(data.get("stored")),
            duplicates=_int(data.get("duplicates")),
            duplicate=bool(data.get("duplicate", False)),
        )

    def complete_mission(
        self, mission_id: int | str, run_id: str | None, total_records: int
    ) -> CompleteAck:
        """Tell the writer the mission is complete. Raises ServiceError
        `count_mismatch` (409, permanent; `body["stored_records"]` says what it holds)."""
        data = self._request(
            "POST",
            f"/missions/{quote(str(mission_id), safe='')}/complete",
            json={"run_id": run_id, "total_records": total_records},
            idempotent=True,
        )
        data = require(data, dict, "complete answer")
        return CompleteAck(
            mission_id=str(data.get("mission_id", mission_id)),
            stored_records=_int(data.get("stored_records"), total_records),
        )

    def read_records(
        self, mission_id: int | str, cursor: str | None = None, limit: int = 500
    ) -> RecordsPage:
        """One page of the mission's records (optional read-back, writer-api.md v1.1)."""
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        data = self._request(
            "GET",
            f"/missions/{quote(str(mission_id), safe='')}/records",
            params=params,
            idempotent=True,
        )
        data = require(data, dict, "records answer")
        records = require(data.get("records"), list, "records")
        nxt = data.get("next_cursor")
        return RecordsPage(
            records=[r for r in records if isinstance(r, dict)],
            next_cursor=str(nxt) if nxt not in (None, "") else None,
        )

    def iter_records(self, mission_id: int | str, limit: int = 500) -> Iterator[dict[str, Any]]:
        """Every record of the mission, page after page, until `next_cursor` is null."""
        cursor: str | None = None
        while True:
            page = self.read_records(mission_id, cursor, limit)
            yield from page.records
            if page.next_cursor is None or page.next_cursor == cursor:
                return
            cursor = page.next_cursor
