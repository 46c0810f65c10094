"""The orchestrator loop: runs the three managers at their intervals, each on its own
thread (and database connection), wakes them at once on events (NOTIFY across
processes, signals inside this one), heartbeats, and stops gracefully (SIGTERM/SIGINT
let every manager finish its current tick; a second signal exits at once).

One thread per manager lane (a manager's tick, or each independent part of it: the
WorkerManager's dispatch and its result delivery are two lanes): a manager waiting on a
worker's or writer's answer, or on the database, no longer holds up the others. They already run concurrently across
orchestrator processes, so nothing between them relies on running one at a time:
claims are leases, transitions compare-and-set, and batches lock in one order."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from django.db import (
    InterfaceError,
    InternalError,
    OperationalError,
    close_old_connections,
    connection,
)
from django.utils import timezone

from orchestrator import events, webhooks
from orchestrator.clients.base import warm_up as clients_warm_up
from orchestrator.managers.base import BaseManager, TickResult, ticking_with
from orchestrator.managers.etl import EtlManager
from orchestrator.managers.missions import MissionManager
from orchestrator.managers.sessions import SessionManager
from orchestrator.managers.workers import WorkerManager
from orchestrator.models import OrchestratorInstance
from orchestrator.states import RetryPolicy
from registry import config

logger = logging.getLogger("orchestrator.runner")

MANAGER_CLASSES: dict[str, type[BaseManager]] = {
    "sessions": SessionManager,
    "workers": WorkerManager,
    "missions": MissionManager,
    "etl": EtlManager,
}
INTERVAL_KEYS = {
    "sessions": "session_tick_s",
    "workers": "worker_tick_s",
    "missions": "mission_tick_s",
    "etl": "etl_tick_s",
}
HEARTBEAT_EVERY_S = 2.0
MAX_SLEEP_S = 1.0
# A tick that did work is followed at once by another, up to this many in a row.
MAX_DRAIN = 20
# The database is unreachable (restart, failover, network): what psycopg raises then.
# InternalError: the server ended a transaction left idle too long (25P03), and
# database_lost tells it from a transaction state error on a healthy connection.
DATABASE_ERRORS = (OperationalError, InterfaceError, InternalError)
# Waits between reconnection attempts while it is: doubled from BASE up to CAP.
# Reconnect waits after the database (or its LISTEN connection) is lost: 0.5 s doubling to 5 s.
DB_RETRY = RetryPolicy(base_s=0.5, cap_s=5.0)


def database_lost(exc: BaseException) -> bool:
    """Whether a database error means the connection or server is gone (connection
    exceptions, SQLSTATE class 08; the server shutting down or starting, 57P01-57P03;
    no SQLSTATE at all: the socket broke), rather than a transaction that was rolled
    back (deadlock 40P01, serialization failure 40001) on a healthy connection."""
    if isinstance(exc, InterfaceError):
        return True
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    if sqlstate is None:
        # No answer from the server at all ("server closed the connection
        # unexpectedly", a refused connect): the connection is gone. A rolled-back
        # transaction always carries its SQLSTATE.
        return True
    # 25P03: PostgreSQL ended a transaction left idle too long (the process was frozen).
    return sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03", "25P03")


def engine_connection_options(
    options: dict[str, Any], pid: int, idle_tx_timeout_s: float
) -> dict[str, Any]:
    """The PostgreSQL OPTIONS of an orchestrator process's connections: a name to tell it
    apart in pg_stat_activity, and a bound on how long one of its transactions may sit
    idle (settings.ORCHESTRATOR_IDLE_TX_TIMEOUT_S; 0 = none) before the server ends it
    and frees its row locks. Server options already given (DATABASE_URL) are kept."""
    timeout_ms = max(0, round(idle_tx_timeout_s * 1000))
    server = f"{options.get('options', '')} -c idle_in_transaction_session_timeout={timeout_ms}"
    return {**options, "application_name": f"mc-orchestrator-{pid}", "options": server.strip()}


def next_wait(interval_s: float, result: TickResult) -> float:
    """How long a manager sleeps after a tick: its interval, or the sooner follow-up
    the tick asked for (running jobs, issue #15 case 6)."""
    if result.follow_up_s is None:
        return interval_s
    return min(interval_s, result.follow_up_s)


def stat_key(kind: str, lane: str) -> str:
    """The stats (and thread) name of a manager's lane: the manager's own for its main
    lane, "<manager>:<lane>" for another."""
    return f"{kind}:{lane}" if lane else kind


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Orchestrator:
    def __init__(
        self,
        managers: list[str] | None = None,
        *,
        name: str | None = None,
        use_notify: bool = True,
        manager_factory: Callable[[str, str], BaseManager] | None = None,
    ) -> None:
        self.name = name or instance_name()
        self.manager_names = managers or list(MANAGER_CLASSES)
        factory = manager_factory or (lambda kind, owner: MANAGER_CLASSES[kind](owner))
        self.managers = {kind: factory(kind, self.name) for kind in self.manager_names}
        self.use_notify = use_notify
        self.stopping = threading.Event()
        self._wake: set[str] = set()
        self._wake_lock = threading.Lock()
        self._listener: events.Listener | None = None
        self._signals = 0
        # Each manager's lanes (parts of its tick with a loop and thread of their own):
        # "" is the main lane, whose stats keep the manager's name; another lane's
        # stats are under "<manager>:<lane>".
        self.lanes = {kind: self.managers[kind].lanes() for kind in self.manager_names}
        self._lane_wakes = {
            (kind, lane): threading.Event()
            for kind in self.manager_names
            for lane in self.lanes[kind]
        }
        self.stats: dict[str, dict[str, Any]] = {
            stat_key(kind, lane): {"ticks": 0} for kind, lane in self._lane_wakes
        }
        self._stats_lock = threading.Lock()  # manager threads write, the heartbeat reads
        self._last_heartbeat = 0.0
        self._heartbeat_lock = threading.Lock()
        self.bus_mode = "polling"
        self._local = threading.local()  # .db_error: set by a tick that lost the database
        self._db_down_since: float | None = None
        self._db_up_at = float("-inf")  # when the last outage ended (monotonic)
        self._db_lock = threading.Lock()

    # ------------------------------------------------------------------ signals

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals += 1
        if self._signals > 1:
            logger.warning("second signal: exiting at once")
            os._exit(1)
        logger.info("signal %s: finishing the current tick, then stopping", signum)
        self.stop()

    def stop(self) -> None:
        """Ask every manager to stop after its current tick (thread-safe)."""
        self.stopping.set()
        for wake in self._lane_wakes.values():
            wake.set()

    def _on_event(
        self, sender: Any, name: str, payload: dict[str, Any], wake: set[str], **kw: Any
    ) -> None:
        self.wake(wake)

    def wake(self, managers: set[str]) -> None:
        relevant = managers & set(self.manager_names)
        if relevant:
            with self._wake_lock:
                self._wake |= relevant
            for (kind, _), event in self._lane_wakes.items():
                if kind in relevant:
                    event.set()

    # ------------------------------------------------------------------ lifecycle

    def register(self) -> None:
        now = timezone.now()
        OrchestratorInstance.objects.update_or_create(
            name=self.name,
            defaults={
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "managers": self.manager_names,
                "started_at": now,
                "heartbeat_at": now,
                "stopped_at": None,
                "event_bus": self.bus_mode,
                "stats": self.stats,
            },
        )

    def heartbeat(self, force: bool = False) -> None:
        """Write the heartbeat and stats, at most every HEARTBEAT_EVERY_S; called by
        whichever manager thread finishes a tick first (the others skip it)."""
        if not force and time.monotonic() - self._last_heartbeat < HEARTBEAT_EVERY_S:
            return
        if not self._heartbeat_lock.acquire(blocking=force):
            return
        try:
            if not force and time.monotonic() - self._last_heartbeat < HEARTBEAT_EVERY_S:
                return
            self._last_heartbeat = time.monotonic()
            OrchestratorInstance.objects.filter(name=self.name).update(
                heartbeat_at=timezone.now(), stats=self.stats_snapshot(), event_bus=self.bus_mode
            )
        finally:
            self._heartbeat_lock.release()

    def stats_snapshot(self) -> dict[str, dict[str, Any]]:
        with self._stats_lock:
            return {kind: dict(stat) for kind, stat in self.stats.items()}

    def _start_listener(self) -> None:
        events.event_published.connect(self._on_event, dispatch_uid=f"orchestrator-{self.name}")
        if not self.use_notify or connection.vendor != "postgresql":
            return
        listener = events.Listener()
        try:
            listener.connect()
        except Exception:
            logger.warning("LISTEN unavailable; polling only", exc_info=True)
            return
        self._listener = listener
        self.bus_mode = "notify"
        thread = threading.Thread(target=self._listen, name="notify-listener", daemon=True)
        thread.start()

    def _listen(self) -> None:
        failures = 1
        while not self.stopping.is_set():
            listener = self._listener
            if listener is None:
                return
            if not listener.connected:
                # Lost earlier (the server restarted): retry with backoff until it is
                # back, then wake every manager for the notifications missed meanwhile.
                if self.stopping.wait(DB_RETRY.delay_s(failures)):
                    return
                try:
                    listener.connect()
                except Exception as exc:
                    listener.close()
                    failures += 1
                    delay = DB_RETRY.delay_s(failures)
                    logger.warning("LISTEN reconnect failed (%s); retrying in %.1fs", exc, delay)
                    continue
                failures = 1
                logger.info("LISTEN reconnected")
                self.wake(set(self.manager_names))
                continue
            try:
                wake = listener.wait(timeout=MAX_SLEEP_S)
            except Exception as exc:
                if self.stopping.is_set():
                    return
                logger.warning("LISTEN connection lost (%s); reconnecting", exc)
                listener.close()
                continue
            if wake:
                self.wake(wake)

    def _stop_listener(self) -> None:
        events.event_published.disconnect(dispatch_uid=f"orchestrator-{self.name}")
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    # ------------------------------------------------------------------ ticks

    def run_tick(self, kind: str, lane: str | None = None) -> TickResult:
        """One tick of one manager (or of one of its lanes); its outcome (or error)
        goes into the stats."""
        tick = self.managers[kind].tick if lane is None else self.lanes[kind][lane]
        started = time.monotonic()
        stat = self.stats[stat_key(kind, lane or "")]
        try:
            with webhooks.cached_endpoints():
                result = tick()
        except DATABASE_ERRORS as exc:
            self._record_error(stat, exc)
            if not database_lost(exc):
                # A deadlock or serialization failure: the transaction was rolled back
                # and the next tick simply tries again.
                logger.warning("%s tick rolled back: %s", kind, str(exc).strip()[:300])
                return self._finish_tick(kind, stat, started, TickResult())
            # Not a bad row: the database went away. The loop backs off and reconnects.
            logger.warning("%s tick lost the database: %s", kind, str(exc).strip()[:300])
            self._local.db_error = exc
            result = TickResult()
        except Exception as exc:
            self._record_error(stat, exc)
            logger.error("%s tick failed:\n%s", kind, traceback.format_exc())
            # One bad row must not crash-loop the process: the next tick tries again.
            close_old_connections()
            result = TickResult()
        return self._finish_tick(kind, stat, started, result)

    def _record_error(self, stat: dict[str, Any], exc: Exception) -> None:
        with self._stats_lock:
            stat.update(
                error=f"{type(exc).__name__}: {exc}"[:500],
                error_at=timezone.now().isoformat(),
            )

    def _finish_tick(
        self, kind: str, stat: dict[str, Any], started: float, result: TickResult
    ) -> TickResult:
        with self._stats_lock:
            stat.update(
                last_tick_at=timezone.now().isoformat(),
                duration_ms=round((time.monotonic() - started) * 1000, 1),
                did=result.counts,
                ticks=stat.get("ticks", 0) + 1,
            )
        if result.did_work:
            logger.info(
                "%s: %s in %.0f ms", kind, result.counts, (time.monotonic() - started) * 1000
            )
        return result

    def run_once(self) -> dict[str, TickResult]:
        """One tick of each manager (missions first, so new work flows through)."""
        order = [k for k in ("missions", "sessions", "workers", "etl") if k in self.managers]
        return {kind: self.run_tick(kind) for kind in order}

    def run(self, *, once: bool = False, max_seconds: float | None = None) -> None:
        self.register()
        if once:
            try:
                self.run_once()
            finally:
                self.shutdown()
            return
        self._start_listener()
        self.heartbeat(force=True)
        clients_warm_up()  # here, not in the first tick that dials out
        # The manager threads open their own connections; this one is idle until the end.
        connection.close()
        deadline = time.monotonic() + max_seconds if max_seconds else None
        threads = [
            threading.Thread(
                target=self._manager_loop,
                args=(kind, lane),
                name=f"manager-{stat_key(kind, lane)}",
            )
            for kind, lane in self._lane_wakes
        ]
        try:
            for thread in threads:
                thread.start()
            while not self.stopping.is_set():
                # The main thread only waits (signals are delivered to it) and keeps time.
                left = deadline - time.monotonic() if deadline else MAX_SLEEP_S
                if left <= 0:
                    break
                self.stopping.wait(min(left, MAX_SLEEP_S))
        finally:
            self.stop()
            for thread in threads:
                if thread.is_alive():
                    thread.join()
            self.shutdown()

    def _manager_loop(self, kind: str, lane: str = "") -> None:
        """One manager lane's loop on its own thread: tick when due or woken, go again
        at once after a tick that did work (up to MAX_DRAIN in a row), back off while
        the database is unreachable."""
        wake = self._lane_wakes[(kind, lane)]
        self.managers[kind].throttle = True  # woken by events: periodic parts at their pace
        drains = failures = 0
        try:
            while not self.stopping.is_set():
                started = time.monotonic()  # a failure of this pass may be an old outage's
                try:
                    close_old_connections()
                    cfg = config.load()
                except DATABASE_ERRORS as exc:
                    failures += 1
                    self._database_down(exc, failures, started)
                    continue
                if failures:
                    failures = 0
                    self._database_up()
                wake.clear()  # an event during the tick sets it again: no wake-up is lost
                with self._wake_lock:
                    self._wake.discard(kind)
                if self.stopping.is_set():
                    break  # a stop() since the check above: its wake-up was just cleared
                with ticking_with(cfg):  # the tick reuses this read, not a second one
                    result = self.run_tick(kind, lane)
                lost = getattr(self._local, "db_error", None)
                if lost is None:
                    try:
                        self.heartbeat()
                    except DATABASE_ERRORS as exc:
                        lost = exc
                if lost is not None:
                    self._local.db_error = None
                    failures += 1
                    self._database_down(lost, failures, started)
                    continue
                if result.did_work:
                    # The manager's other lanes go again at once too, as when its
                    # tick was one (jobs just started have results to page).
                    for (other, name), event in self._lane_wakes.items():
                        if other == kind and name != lane:
                            event.set()
                if result.did_work and drains < MAX_DRAIN:
                    drains += 1  # drain: go again at once
                    continue
                drains = 0
                if not self.stopping.is_set():
                    wake.wait(next_wait(float(cfg[INTERVAL_KEYS[kind]]), result))
        except BaseException:
            logger.critical("manager %s stopped:\n%s", stat_key(kind, lane), traceback.format_exc())
            self.stop()  # the process exits rather than run without this manager
            raise
        finally:
            with contextlib.suppress(Exception):
                connection.close()

    def _database_down(self, exc: Exception, failures: int, started: float) -> None:
        """Drop this thread's broken connection and wait (capped exponential backoff,
        cut short by SIGTERM) before its next pass reconnects. Never exits: no crash
        loop. The first thread to notice logs it once. A pass that began before the last
        outage ended (a tick busy over HTTP through a restart) met that outage's broken
        connection, not a new outage: it reconnects at once and logs no second outage."""
        with self._db_lock:
            first = self._db_down_since is None
            stale = first and started < self._db_up_at
            if first and not stale:
                self._db_down_since = time.monotonic()
        with contextlib.suppress(Exception):  # already broken: nothing to close cleanly
            connection.close()
        if stale:
            logger.info("a connection broken before the database came back was replaced")
            return
        delay = DB_RETRY.delay_s(failures)
        if first:
            logger.warning(
                "database unavailable (%s: %s); reconnecting",
                type(exc).__name__,
                str(exc).strip()[:300],
                extra={"error_code": "DB_UNAVAILABLE"},
            )
        else:
            logger.info("database still unavailable; retrying in %.1fs", delay)
        self.stopping.wait(delay)

    def _database_up(self) -> None:
        with self._db_lock:
            since, self._db_down_since = self._db_down_since, None
            if since is not None:
                self._db_up_at = time.monotonic()
        if since is None:
            return
        logger.info(
            "database reachable again after %.1fs",
            time.monotonic() - since,
            extra={"error_code": "DB_RECOVERED"},
        )
        self._last_heartbeat = 0.0  # heartbeat on this pass: the row is fresh at once

    def shutdown(self) -> None:
        self._stop_listener()
        try:
            OrchestratorInstance.objects.filter(name=self.name).update(
                stopped_at=timezone.now(),
                heartbeat_at=timezone.now(),
                stats=self.stats_snapshot(),
            )
        except Exception:
            logger.warning("could not record the stop of %s", self.name, exc_info=True)
        logger.info("orchestrator %s stopped", self.name)
