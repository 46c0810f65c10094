"""Uploads for real (uploader-api.md): when `uploads_enabled` is on and an uploader is
enabled, each stored failure snapshot and each finished mission's export are sent once
(idempotent `upload_key`), and the returned URL is kept on the item's evidence and on the
mission. A failed upload is logged and retried on a later tick; it never fails a mission.
No DB lock is held across an upload; the URL is written compare-and-set (only if empty).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator

from mission_control import evidence_files, extensions
from mission_control.records import RecordsUnavailable
from orchestrator.clients.base import ServiceError
from orchestrator.clients.uploader import UploaderClient
from orchestrator.models import ItemEvidence, Mission
from orchestrator.states import MissionStatus
from registry.config import Config
from registry.models import Uploader

log = logging.getLogger(__name__)
BATCH = 20
# Kept on a finished mission whose export cannot be uploaded (an external writer holds
# the records without read-back, or the file is too large): not tried again.
NOT_UPLOADABLE = "-"
EXPORT_MAX_BYTES = 50 * 1024 * 1024


def active_uploader(cfg: Config) -> Uploader | None:
    if not cfg.uploads_enabled:
        return None
    return Uploader.objects.filter(enabled=True).order_by("id").first()


def run(cfg: Config) -> int:
    """One round of uploads; returns how many files were stored."""
    uploader = active_uploader(cfg)
    if uploader is None:
        return 0
    with UploaderClient.for_uploader(uploader, cfg) as client:
        return upload_snapshots(client) + upload_exports(client)


def _snapshot_file(ev: ItemEvidence) -> bytes:
    png = evidence_files.read(ev.screenshot_file)
    body = {
        "mission_id": ev.item.mission_id,
        "item_id": ev.item_id,
        "attempt": ev.attempt,
        "error_code": ev.error_code,
        "final_url": ev.final_url,
        "http_status": ev.http_status,
        "headers": ev.headers,
        "block_marker": ev.block_marker,
        "html_excerpt": ev.html_excerpt,
        "screenshot_png_base64": base64.b64encode(png).decode("ascii") if png else None,
        "captured_at": ev.captured_at.isoformat(),
    }
    return json.dumps(body, ensure_ascii=False).encode()


def upload_snapshots(client: UploaderClient) -> int:
    sent = 0
    pending = ItemEvidence.objects.filter(upload_url="").select_related("item").order_by("id")
    for ev in list(pending[:BATCH]):
        mission_id = ev.item.mission_id
        key = f"m{mission_id}-i{ev.item_id}-a{ev.attempt}-snapshot"
        try:
            ack = client.upload(
                key, mission_id, "snapshot", f"{key}.json", "application/json", _snapshot_file(ev)
            )
        except ServiceError as exc:
            log.warning("snapshot upload %s failed (retried later): %s", key, exc)
            continue
        sent += ItemEvidence.objects.filter(pk=ev.pk, upload_url="").update(upload_url=ack.url)
    return sent


def _export_lines(mission_id: int) -> Iterator[str] | None:
    for provider in extensions.providers("mission_export_jsonl"):
        lines = provider(mission_id)
        if lines is not None:
            return lines
    return None


def _export_bytes(mission_id: int) -> bytes | None:
    lines = _export_lines(mission_id)
    if lines is None:
        return None
    chunks: list[bytes] = []
    size = 0
    for line in lines:
        raw = line.encode()
        size += len(raw)
        if size > EXPORT_MAX_BYTES:
            log.warning("export of mission %s too large to upload", mission_id)
            return None
        chunks.append(raw)
    return b"".join(chunks)


def upload_exports(client: UploaderClient) -> int:
    sent = 0
    finished = Mission.objects.filter(
        status=MissionStatus.FINALIZADO, export_upload_url=""
    ).order_by("id")
    for mission_id in list(finished.values_list("id", flat=True)[:BATCH]):
        try:
            content = _export_bytes(mission_id)
        except RecordsUnavailable as exc:
            log.warning("export of mission %s unavailable (retried later): %s", mission_id, exc)
            continue
        if content is None:
            Mission.objects.filter(pk=mission_id, export_upload_url="").update(
                export_upload_url=NOT_UPLOADABLE
            )
            continue
        key = f"m{mission_id}-export"
        try:
            ack = client.upload(
                key,
                mission_id,
                "export",
                f"mission-{mission_id}-records.jsonl",
                "application/x-ndjson",
                content,
            )
        except ServiceError as exc:
            log.warning("export upload %s failed (retried later): %s", key, exc)
            continue
        sent += Mission.objects.filter(pk=mission_id, export_upload_url="").update(
            export_upload_url=ack.url
        )
    return sent
