"""Where a mission's records are, for export and preview (the ``mission_records`` hook).

The built-in writer keeps records in this database (``localnode``). An external writer
keeps them itself: it may offer read-back (docs/contracts/writer-api.md, "Optional
read-back"), and then ``pages`` streams them; otherwise export must say which writer holds
them instead of answering an empty file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from mission_control import extensions

Record = dict[str, Any]


class RecordsUnavailable(Exception):
    """The external writer could not give the records back now (offline, bad answer)."""


@dataclass(frozen=True)
class ExternalRecords:
    writer_name: str
    # None when the writer does not offer read-back.
    stream: Callable[[], Iterator[Record]] | None
    # False when the writer did not answer: whether it reads back is unknown for now,
    # and `stream` raises RecordsUnavailable.
    answering: bool = True


def external_records(mission_id: int) -> ExternalRecords | None:
    """The external writer holding ``mission_id``'s records; None for the built-in one."""
    for provider in extensions.providers("mission_records"):
        found = provider(mission_id)
        if found is not None:
            return found
    return None


def primed(records: Iterator[Record]) -> Iterator[Record]:
    """Fetch the first record now, so a writer that fails before answering raises
    RecordsUnavailable here, not halfway through a 200 already sent."""
    try:
        first = next(records)
    except StopIteration:
        return iter(())

    def chain() -> Iterator[Record]:
        yield first
        yield from records

    return chain()
