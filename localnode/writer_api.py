"""Writer API v1 (docs/contracts/writer-api.md) served by the local node: records are rows
of `LocalRecord`, idempotent on the batch key and on `(mission_id, item_id)`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from localnode import serializers
from localnode.http import ApiError, api_view, invalid, json_body
from localnode.models import MAX_BATCH_RECORDS, LocalBatch, LocalCompletion, LocalRecord

VERSION = "1.0.0"


def validate_batch(payload: dict[str, Any]) -> dict[str, Any]:
    """POST /batches: the envelope (`serializers.BatchSerializer`, 422
    `invalid_request`), the size (413 `batch_too_large`), then each record
    (`serializers.RecordSerializer`, 422 `invalid_records` naming the records)."""
    envelope = serializers.BatchSerializer(data=payload)
    if not envelope.is_valid():
        raise invalid(serializers.flat_errors(envelope.errors))
    records = envelope.validated_data["records"]
    if len(records) > MAX_BATCH_RECORDS:
        raise ApiError(
            413,
            "batch_too_large",
            f"{len(records)} records; at most {MAX_BATCH_RECORDS} per batch.",
            max_batch_records=MAX_BATCH_RECORDS,
        )
    checked = serializers.RecordSerializer(data=records, many=True, message="must be an object")
    if not checked.is_valid():
        errors = serializers.flat_errors(checked.errors, "records")
        raise invalid(errors, code="invalid_records")
    mission = payload["mission"]
    return {
        "batch_key": envelope.validated_data["batch_key"],
        "mission_id": envelope.validated_data["mission"]["id"],
        "mission": mission,
        "run_id": str(mission.get("run_id") or "")[:100],
        "records": list(checked.validated_data),
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
    mid = serializers.mission_id_of(mission_id)
    checked = serializers.CompleteSerializer(data=payload)
    errors = {} if checked.is_valid() else serializers.flat_errors(checked.errors)
    if mid is None:
        errors = {"mission_id": "a positive integer", **errors}
    if errors:
        raise invalid(errors)
    assert mid is not None
    total, run_id = checked.validated_data["total_records"], checked.validated_data["run_id"]
    stored = complete_mission(mid, run_id, total, timezone.now())
    return JsonResponse({"mission_id": mid, "stored_records": stored})
