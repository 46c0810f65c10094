"""The ``mission_records`` provider: which external writer holds a mission's records and
whether it can give them back (writer-api.md, "Optional read-back").

The writer's health is asked once a minute at most (cached), never under a DB lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.core.cache import cache

from mission_control.records import (
    ExternalRecords,
    Record,
    RecordsUnavailable,
    external_records,
)
from orchestrator.clients.base import ServiceError
from orchestrator.clients.writer import WriterClient
from orchestrator.models import Mission
from registry import config
from registry.models import Writer

BUILTIN_PATH = "/local/writer/api/v1"
CAPABILITY_TTL = 60


def is_builtin(writer: Writer) -> bool:
    return urlsplit(writer.base_url).path.rstrip("/").endswith(BUILTIN_PATH)


def _client(writer: Writer) -> WriterClient:
    return WriterClient.for_writer(writer, config.load())


def offers_read_back(writer: Writer) -> bool:
    key = f"writer-read-back:{writer.pk}:{writer.base_url}"
    known = cache.get(key)
    if known is None:
        try:
            known = _client(writer).health().read_back
        except ServiceError:
            return False  # unknown now: ask again next time
        cache.set(key, known, CAPABILITY_TTL)
    return bool(known)


def mission_records(mission_id: int) -> ExternalRecords | None:
    writer_id = Mission.objects.filter(pk=mission_id).values_list("writer_id", flat=True).first()
    writer = Writer.objects.filter(pk=writer_id).first() if writer_id else None
    if writer is None or is_builtin(writer):
        return None
    if not offers_read_back(writer):
        return ExternalRecords(writer.name, None)

    def stream() -> Iterator[Record]:
        try:
            with _client(writer) as client:
                yield from client.iter_records(mission_id)
        except ServiceError as exc:
            raise RecordsUnavailable(f"{writer.name}: {exc}") from exc

    return ExternalRecords(writer.name, stream)


# ---------------------------------------------------------------- one item's record

# A read-back has no per-item query: a preview reads at most this many records.
PREVIEW_SCAN_MAX = 5000


class RecordsElsewhere(Exception):
    """An external writer holds the records and offers no read-back."""

    def __init__(self, writer_name: str):
        super().__init__(writer_name)
        self.writer_name = writer_name


def _builtin_records(mission_id: int, item_ids: list[str]) -> dict[str, Any]:
    try:
        model = apps.get_model("localnode", "LocalRecord")
    except LookupError:
        return {}
    rows = model.objects.filter(mission_id=mission_id, item_id__in=item_ids)
    return {row.item_id: row.data for row in rows.only("item_id", "data")}


def item_records(mission_id: int, item_ids: Iterable[int | str]) -> dict[str, Any]:
    """The extracted record (`data`) of each of `item_ids` that has one, keyed by item id:
    from the built-in writer, or through an external writer's read-back (read until every
    wanted id is found, at most PREVIEW_SCAN_MAX records). Raises RecordsElsewhere (an
    external writer without read-back) or RecordsUnavailable (it failed to answer)."""
    wanted = [str(i) for i in item_ids]
    if not wanted:
        return {}
    external = external_records(mission_id)
    if external is None:
        return _builtin_records(mission_id, wanted)
    if external.stream is None:
        raise RecordsElsewhere(external.writer_name)
    found: dict[str, Any] = {}
    missing = set(wanted)
    stream = external.stream()
    try:
        for n, record in enumerate(stream):
            key = str(record.get("item_id", ""))
            if key in missing:
                data = record.get("data")
                found[key] = data if isinstance(data, dict) else record
                missing.discard(key)
            if not missing or n + 1 >= PREVIEW_SCAN_MAX:
                break
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # ends the writer's connection when we stop early
    return found


def item_record(mission_id: int, item_id: int | str) -> Any:
    """One item's record (None when it has none); raises as `item_records`."""
    return item_records(mission_id, [item_id]).get(str(item_id))


def elsewhere_message(writer_name: str) -> str:
    return (
        f"Os registros desta missão estão no writer externo «{writer_name}», que não "
        "oferece leitura de volta: consulte-os por lá."
    )
