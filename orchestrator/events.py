"""The event bus: Django signals inside a process, PostgreSQL NOTIFY across processes.

`publish()` fires a signal at once and, on PostgreSQL, queues one coarse NOTIFY per
transaction (after commit) naming the managers that should wake. NOTIFY takes a lock at
commit that serializes busy writers, so it is sent at most once per transaction and
never once per row. Polling stays the safety net; on SQLite only signals and polling exist.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterable
from typing import Any

from django.db import connection, transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

CHANNEL = "mission_control"
MANAGERS = ("sessions", "workers", "missions")

# sender=None, name=<event name>, payload=<dict>, wake=<set of manager names>
event_published = Signal()

# Which managers an event concerns, by event-name prefix (longest prefix wins).
_ROUTES: dict[str, frozenset[str]] = {
    "mission.queued": frozenset({"missions"}),
    "mission.atribuido": frozenset({"sessions"}),
    "mission.extraindo": frozenset(),
    "mission.armazenando": frozenset({"missions"}),
    "mission.cancelado": frozenset({"sessions", "missions"}),
    "mission.": frozenset({"missions"}),
    "session.requested": frozenset({"sessions"}),
    "session.ready": frozenset({"workers"}),
    "session.failed": frozenset({"sessions", "missions"}),
    "session.closing": frozenset({"sessions"}),
    "session.": frozenset({"sessions"}),
    "job.finished": frozenset({"workers", "missions"}),
    "items.pending": frozenset({"workers"}),
    "items.settled": frozenset({"missions"}),
    "capacity.freed": frozenset({"missions"}),
    "worker.": frozenset({"missions", "sessions"}),
    "control.": frozenset(MANAGERS),
}


@functools.lru_cache(maxsize=256)  # a few dozen event names; asked once per event
def route(name: str) -> frozenset[str]:
    best = ""
    for prefix in _ROUTES:
        if name.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return _ROUTES.get(best, frozenset())


class _Pending(threading.local):
    def __init__(self) -> None:
        self.wake: set[str] = set()


_pending = _Pending()


def publish(name: str, **payload: Any) -> None:
    wake = set(route(name))
    event_published.send(sender=None, name=name, payload=payload, wake=wake)
    if wake and connection.vendor == "postgresql":
        _queue_notify(wake)


def _queue_notify(wake: Iterable[str]) -> None:
    if connection.in_atomic_block and any(entry[1] is _flush for entry in connection.run_on_commit):
        _pending.wake.update(wake)
        return
    # A new transaction: whatever is left belonged to one that rolled back.
    _pending.wake = set(wake)
    transaction.on_commit(_flush)


def _flush() -> None:
    wake, _pending.wake = _pending.wake, set()
    if not wake:
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, ",".join(sorted(wake))])
    except Exception:  # the poll is the safety net; a lost wake-up only delays work
        logger.warning("NOTIFY failed; managers will catch up on their next poll", exc_info=True)


class Listener:
    """LISTENs on its own autocommit connection and reports which managers to wake."""

    def __init__(self) -> None:
        self._conn: Any = None

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def connect(self) -> bool:
        if connection.vendor != "postgresql":
            return False
        import psycopg

        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.pop("prepare_threshold", None)
        conn = psycopg.connect(**params, autocommit=True)
        try:
            conn.execute(f"LISTEN {CHANNEL}")
        except Exception:
            conn.close()
            raise
        self._conn = conn  # connected only once it listens
        return True

    def wait(self, timeout: float) -> set[str]:
        """Block up to `timeout` s; return the managers named by notifications."""
        if self._conn is None:
            return set()
        wake: set[str] = set()
        for notify in self._conn.notifies(timeout=timeout, stop_after=1):
            wake.update(p for p in notify.payload.split(",") if p in MANAGERS)
        # Drain whatever else arrived meanwhile without blocking.
        for notify in self._conn.notifies(timeout=0.0):
            wake.update(p for p in notify.payload.split(",") if p in MANAGERS)
        return wake

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a broken connection: nothing left to close cleanly
                logger.debug("closing the LISTEN connection failed", exc_info=True)
