"""Download a mission's records held by the local writer, as JSON Lines or CSV.

Streams rows with a server-side cursor (`iterator(chunk_size=2000)`), so memory stays
flat however many records a mission has.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from localnode.models import LocalRecord
from mission_control import extensions
from mission_control.api import error_body
from mission_control.records import (
    ExternalRecords,
    Record,
    RecordsUnavailable,
    external_records,
    primed,
)

CHUNK = 2000
CSV_COLUMNS = ["mission_id", "item_id", "url", "http_status", "fetched_at", "title", "data"]
FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


class _JsonOnly(BaseContentNegotiation):
    """`?format=` picks the export format here, not a DRF renderer; errors are JSON."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: Any, format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


class _Echo:
    def write(self, value: str) -> str:
        return value


def _rows(mission_id: int) -> Iterator[LocalRecord]:
    return (
        LocalRecord.objects.filter(mission_id=mission_id)
        .order_by("id")
        .only("mission_id", "item_id", "url", "http_status", "fetched_at", "data")
        .iterator(chunk_size=CHUNK)
    )


def local_records(mission_id: int) -> Iterator[Record]:
    for record in _rows(mission_id):
        yield {
            "mission_id": record.mission_id,
            "item_id": record.item_id,
            "url": record.url,
            "http_status": record.http_status,
            "fetched_at": record.fetched_at.isoformat() if record.fetched_at else None,
            "data": record.data,
        }


def _external(mission_id: int, records: Iterable[Record]) -> Iterator[Record]:
    """A writer's read-back records in the export's shape (mission id first)."""
    for rec in records:
        yield {
            "mission_id": mission_id,
            "item_id": rec.get("item_id"),
            "url": rec.get("url"),
            "http_status": rec.get("http_status"),
            "fetched_at": rec.get("fetched_at"),
            "data": rec.get("data"),
        }


def jsonl_lines(records: Iterable[Record]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record, ensure_ascii=False) + "\n"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: object) -> object:
    """A scraped text cell a spreadsheet will not run: a leading =, +, -, @, tab or CR
    gets a ' in front (OWASP CSV injection). Numbers are left as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_lines(records: Iterable[Record]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for record in records:
        data = record["data"] if isinstance(record["data"], dict) else {}
        yield writer.writerow(
            [
                record["mission_id"],
                cell(record["item_id"]),
                cell(record["url"]),
                record["http_status"] if record["http_status"] is not None else "",
                record["fetched_at"] or "",
                cell(data.get("title") or ""),
                cell(json.dumps(data, ensure_ascii=False)),
            ]
        )


def held_elsewhere(writer_name: str) -> dict[str, Any]:
    return error_body(
        "records_in_external_writer",
        f"Os registros desta missão estão no writer externo «{writer_name}», que não "
        "oferece leitura de volta: baixe-os por lá.",
        {"writer": writer_name},
    )


def mission_source(mission_id: int) -> Iterator[Record] | ExternalRecords:
    """The records to export, or the external writer that holds them without read-back."""
    if LocalRecord.objects.filter(mission_id=mission_id).exists():
        return local_records(mission_id)
    external = external_records(mission_id)
    if external is None:
        return local_records(mission_id)
    if external.stream is None:
        return external
    return primed(_external(mission_id, external.stream()))


def export_jsonl(mission_id: int) -> Iterator[str] | None:
    """The ``mission_export_jsonl`` hook: the export as JSON Lines, or None when an
    external writer holds the records without read-back."""
    source = mission_source(mission_id)
    if isinstance(source, ExternalRecords):
        return None
    return jsonl_lines(source)


@extend_schema(
    parameters=[
        OpenApiParameter("format", str, enum=sorted(FORMATS), description="jsonl or csv"),
    ],
    responses={
        (200, "application/x-ndjson"): OpenApiTypes.BINARY,
        (200, "text/csv"): OpenApiTypes.BINARY,
        409: OpenApiTypes.OBJECT,
        503: OpenApiTypes.OBJECT,
    },
    description=(
        "Stream a mission's records: the built-in writer's, or an external writer's through "
        "its read-back; 409 records_in_external_writer when that writer holds them alone."
    ),
)
class MissionRecordsExport(APIView):
    """GET /api/missions/{id}/records/?format=jsonl|csv (viewer role)."""

    renderer_classes = [JSONRenderer]
    content_negotiation_class = _JsonOnly

    def get(self, request: Request, mission_id: int) -> Any:
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in FORMATS:
            return Response(
                error_body(
                    "invalid_format", "format must be jsonl or csv.", {"format": "jsonl|csv"}
                ),
                status=400,
            )
        if not (
            any(exists(mission_id) for exists in extensions.providers("mission_exists"))
            or LocalRecord.objects.filter(mission_id=mission_id).exists()
        ):
            return Response(error_body("not_found", f"No mission {mission_id}."), status=404)
        try:
            source = mission_source(mission_id)
        except RecordsUnavailable as exc:
            return Response(
                error_body("writer_unavailable", f"O writer não devolveu os registros: {exc}"),
                status=503,
            )
        if isinstance(source, ExternalRecords):
            return Response(held_elsewhere(source.writer_name), status=409)
        lines = jsonl_lines(source) if fmt == "jsonl" else csv_lines(source)
        response = StreamingHttpResponse(lines, content_type=FORMATS[fmt])
        response["Content-Disposition"] = (
            f'attachment; filename="mission-{mission_id}-records.{fmt}"'
        )
        response["Cache-Control"] = "no-store"
        return response
