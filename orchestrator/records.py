"""The ``mission_records`` provider: which external writer holds a mission's records and
whether it can give them back (writer-api.md, "Optional read-back").

The writer's health is asked once a minute at most (cached), never under a DB lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from django.core.cache import cache

from mission_control.records import ExternalRecords, Record, RecordsUnavailable
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
