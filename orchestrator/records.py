"""The ``mission_records`` provider: which external writer holds a mission's records and
whether it can give them back (writer-api.md, "Optional read-back").

The writer's health is asked once a minute at most (cached), never under a DB lock. A
writer that does not answer is "unknown", not "without read-back": its records are
unavailable for now (export answers 503, an upload pass tries again later) and it is
asked again after UNKNOWN_TTL. Console pages read with a short budget (one attempt,
QUICK_TIMEOUT_S), so a writer that hangs cannot hold a page (or a web worker) for the
client's full deadline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any, Literal
from urllib.parse import urlsplit

from django.apps import apps
from django.core.cache import cache

from mission_control.records import (
    ExternalRecords,
    Record,
    RecordsUnavailable,
)
from orchestrator.clients.base import ServiceError
from orchestrator.clients.writer import WriterClient
from orchestrator.models import Mission
from registry import config
from registry.models import Writer

BUILTIN_PATH = "/local/writer/api/v1"
CAPABILITY_TTL = 60
UNKNOWN_TTL = 10
QUICK_TIMEOUT_S = 5.0

ReadBack = Literal["yes", "no", "unknown"]


def is_builtin(writer: Writer) -> bool:
    return urlsplit(writer.base_url).path.rstrip("/").endswith(BUILTIN_PATH)


def _client(writer: Writer, *, quick: bool = False) -> WriterClient:
    client = WriterClient.for_writer(writer, config.load())
    if quick:  # one attempt; every timeout is capped by what is left of the deadline
        deadline = min(client.settings.deadline, QUICK_TIMEOUT_S)
        client.settings = dataclasses.replace(client.settings, max_attempts=1, deadline=deadline)
    return client


def offers_read_back(writer: Writer) -> ReadBack:
    """Whether the writer gives records back: its health's capabilities, asked with the
    short budget; "unknown" when it did not answer (remembered for UNKNOWN_TTL)."""
    key = f"writer-read-back:{writer.pk}:{writer.base_url}"
    known: ReadBack | None = cache.get(key)
    if known is None:
        try:
            with _client(writer, quick=True) as client:
                known = "yes" if client.health().read_back else "no"
        except ServiceError:
            known = "unknown"
        cache.set(key, known, UNKNOWN_TTL if known == "unknown" else CAPABILITY_TTL)
    return known


def mission_records(mission_id: int, *, quick: bool = False) -> ExternalRecords | None:
    writer_id = Mission.objects.filter(pk=mission_id).values_list("writer_id", flat=True).first()
    writer = Writer.objects.filter(pk=writer_id).first() if writer_id else None
    if writer is None or is_builtin(writer):
        return None
    read_back = offers_read_back(writer)
    if read_back == "no":
        return ExternalRecords(writer.name, None)

    def stream() -> Iterator[Record]:
        if read_back == "unknown":
            raise RecordsUnavailable(f"{writer.name}: não respondeu")
        try:
            with _client(writer, quick=quick) as client:
                yield from client.iter_records(mission_id)
        except ServiceError as exc:
            raise RecordsUnavailable(f"{writer.name}: {exc}") from exc

    return ExternalRecords(writer.name, stream, answering=read_back == "yes")


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
    wanted id is found, at most PREVIEW_SCAN_MAX records, with the short budget: pages
    and the API ask for it while someone waits). Raises RecordsElsewhere (an
    external writer without read-back) or RecordsUnavailable (it failed to answer)."""
    wanted = [str(i) for i in item_ids]
    if not wanted:
        return {}
    external = mission_records(mission_id, quick=True)
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
