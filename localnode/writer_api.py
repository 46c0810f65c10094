"""Writer API v1 (docs/contracts/writer-api.md) served by the local node: records are rows
of `LocalRecord`, idempotent on the batch key and on `(mission_id, item_id)`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from localnode.http import BATCH_KEY_RE, ApiError, api_view, invalid, json_body
from localnode.models import MAX_BATCH_RECORDS, LocalBatch, LocalCompletion, LocalRecord

VERSION = "1.0.0"


def _mission_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def validate_batch(payload: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    batch_key = payload.get("batch_key")
    if not isinstance(batch_key, str) or not BATCH_KEY_RE.fullmatch(batch_key):
        errors["batch_key"] = "required: 1-200 characters of A-Za-z0-9._:-"
    mission = payload.get("mission")
    mission_id = _mission_id(mission.get("id")) if isinstance(mission, dict) else None
    if mission_id is None:
        errors["mission.id"] = "required: a positive integer"
    records = payload.get("records")
    if not isinstance(records, list):
        errors["records"] = "required: a list"
    if errors:
        raise invalid(errors)
    assert isinstance(records, list) and isinstance(mission, dict)
    if len(records) > MAX_BATCH_RECORDS:
        raise ApiError(
            413,
            "batch_too_large",
            f"{len(records)} records; at most {MAX_BATCH_RECORDS} per batch.",
            max_batch_records=MAX_BATCH_RECORDS,
        )
    record_errors: dict[str, str] = {}
    clean: list[dict[str, Any]] = []
    for index, record in enumerate(records):
        where = f"records[{index}]"
        if not isinstance(record, dict):
            record_errors[where] = "must be an object"
            continue
        item_id = record.get("item_id")
        if not isinstance(item_id, str) or not 1 <= len(item_id) <= 64:
            record_errors[f"{where}.item_id"] = "required: a string of 1-64 characters"
        url = record.get("url") or ""
        if not isinstance(url, str) or len(url) > 2048:
            record_errors[f"{where}.url"] = "a string of at most 2048 characters"
        fetched_raw = record.get("fetched_at")
        fetched_at: dt.datetime | None = None
        if fetched_raw is not None:
            fetched_at = parse_datetime(fetched_raw) if isinstance(fetched_raw, str) else None
            if fetched_at is None or fetched_at.tzinfo is None:
                record_errors[f"{where}.fetched_at"] = "an ISO 8601 timestamp with offset"
        http_status = record.get("http_status")
        if http_status is not None and (
            not isinstance(http_status, int)
            or isinstance(http_status, bool)
            or not 100 <= http_status <= 599
        ):
            record_errors[f"{where}.http_status"] = "an HTTP status code"
        data = record.get("data", {})
        if data is None:
            data = {}
        if not isinstance(data, dict):
            record_errors[f"{where}.data"] = "must be an object"
        clean.append(
            {
                "item_id": item_id,
                "url": url,
                "fetched_at": fetched_at,
                "http_status": http_status,
                "data": data,
            }
        )
    if record_errors:
        raise invalid(record_errors, code="invalid_records")
    return {
        "batch_key": batch_key,
        "mission_id": mission_id,
        "mission": mission,
        "run_id": str(mission.get("run_id") or "")[:100],
        "records": clean,
    }


def store_batch(data: dict[str, Any], now: dt.datetime) -> tuple[LocalBatch, bool]:
    """Store a batch once. Returns (batch, created); records already held for the
    mission are skipped and counted as duplicates."""
    existing = LocalBatch.objects.filter(batch_key=data["batch_key"]).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            batch = LocalBatch.objects.create(
                batch_key=data["batch_key"],
                mission_id=data["mission_id"],
                run_id=data["run_id"],
                mission=data["mission"],
                received=len(data["records"]),
                created_at=now,
            )
            LocalRecord.objects.bulk_create(
                [
                    LocalRecord(mission_id=data["mission_id"], batch=batch, created_at=now, **r)
                    for r in data["records"]
                ],
                ignore_conflicts=True,
            )
            # Rows that lost to an earlier record (or a twin in this batch) keep another
            # batch or are absent, so this count is exact even under concurrent batches.
            stored = LocalRecord.objects.filter(batch=batch).count()
            batch.stored = stored
            batch.duplicates = len(data["records"]) - stored
            batch.save(update_fields=["stored", "duplicates"])
    except IntegrityError:
        # A concurrent request with the same batch key committed first.
        return LocalBatch.objects.get(batch_key=data["batch_key"]), False
    return batch, True


def complete_mission(mission_id: int, run_id: str, total_records: int, now: dt.datetime) -> int:
    stored = LocalRecord.objects.filter(mission_id=mission_id).count()
    if stored != total_records:
        raise ApiError(
            409,
            "count_mismatch",
            f"The writer holds {stored} records of mission {mission_id}, not {total_records}.",
            stored_records=stored,
            total_records=total_records,
        )
    LocalCompletion.objects.update_or_create(
        mission_id=mission_id,
        defaults={"run_id": run_id, "total_records": total_records, "completed_at": now},
    )
    return stored


@api_view(("GET",))
def health(request: HttpRequest) -> HttpResponse:
    return JsonResponse(
        {"status": "ok", "version": VERSION, "max_batch_records": MAX_BATCH_RECORDS}
    )


@api_view(("POST",))
def batches(request: HttpRequest) -> HttpResponse:
    data = validate_batch(json_body(request))
    batch, created = store_batch(data, timezone.now())
    return JsonResponse(
        {
            "batch_id": batch.public_id,
            "stored": batch.stored,
            "duplicates": batch.duplicates,
            "duplicate": not created,
        },
        status=201 if created else 200,
    )


@api_view(("POST",))
def complete(request: HttpRequest, mission_id: str) -> HttpResponse:
    payload = json_body(request)
    mid = _mission_id(mission_id)
    total = payload.get("total_records")
    errors: dict[str, str] = {}
    if mid is None:
        errors["mission_id"] = "a positive integer"
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        errors["total_records"] = "required: a non-negative integer"
    run_id = payload.get("run_id") or ""
    if not isinstance(run_id, str):
        errors["run_id"] = "must be a string"
    if errors:
        raise invalid(errors)
    assert mid is not None and isinstance(total, int)
    stored = complete_mission(mid, run_id, total, timezone.now())
    return JsonResponse({"mission_id": mid, "stored_records": stored})
