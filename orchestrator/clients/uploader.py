"""Client of the Uploader API v1 (docs/contracts/uploader-api.md). Used only while the
`uploads_enabled` config key is true."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from orchestrator.clients.base import BaseClient, ClientSettings, ServiceError, require

if TYPE_CHECKING:
    from registry.config import Config
    from registry.models import Uploader


@dataclass(frozen=True)
class UploaderHealth:
    status: str
    version: str


@dataclass(frozen=True)
class UploadAck:
    upload_id: str
    url: str


class UploaderClient(BaseClient):
    service_name = "uploader"

    @classmethod
    def for_uploader(
        cls,
        uploader: Uploader,
        cfg: Config | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
    ) -> UploaderClient:
        settings = ClientSettings.from_config(cfg) if cfg is not None else ClientSettings()
        return cls(uploader.base_url, uploader.api_key, settings, transport=transport, http=http)

    def health(self) -> UploaderHealth:
        data = require(self._request("GET", "/health", idempotent=True), dict, "health")
        return UploaderHealth(
            status=str(data.get("status") or "ok"), version=str(data.get("version") or "")
        )

    def upload(
        self,
        upload_key: str,
        mission_id: int | str,
        kind: str,
        filename: str,
        content_type: str,
        content: bytes,
    ) -> UploadAck:
        """Store a file once per `upload_key`. Raises ServiceError `too_large` (413)."""
        data = self._request(
            "POST",
            "/uploads",
            json={
                "upload_key": upload_key,
                "mission_id": mission_id,
                "kind": kind,
                "filename": filename,
                "content_type": content_type,
                "content_base64": base64.b64encode(content).decode("ascii"),
            },
            idempotent=True,
        )
        data = require(data, dict, "upload answer")
        if not data.get("upload_id") or not isinstance(data.get("url"), str):
            raise ServiceError("invalid_response", "upload answer without 'upload_id' or 'url'")
        return UploadAck(upload_id=str(data["upload_id"]), url=data["url"])
