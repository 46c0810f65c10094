"""PostgreSQL restarted under a running run_orchestrator (`pg_ctl restart -m fast`, then
`-m immediate`): the process stays up, logs the outage, reconnects and finishes every
mission with nothing done twice.

The shared server cannot be restarted, so the test builds a private throwaway cluster
(initdb as the `postgres` OS user, a free port, trust auth, sockets in a temp dir),
copies the test database into it with pg_dump once the fleet and missions are set up,
and points the orchestrator there. Assertions read the private cluster with psycopg.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from orchestrator import actions
from orchestrator.states import ItemStatus, MissionStatus
from registry import config
from tests import factories
from tests.e2e.processes import database_url, spawn, stop, wait_for
from tests.fakes.server import free_port
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("processes"),
]

PG_BIN = Path(os.environ.get("MC_PG_BIN", "/usr/lib/postgresql/15/bin"))
RUNUSER = shutil.which("runuser")
MISSIONS = 24
ITEMS = 10
CONFIG = {
    "session_tick_s": 0.3,
    "worker_tick_s": 0.3,
    "mission_tick_s": 0.3,
    "lease_s": 5,
    "proxy_cooldown_s": 0,
    "retry_backoff_base_s": 0.0,
    "retry_jitter": 0.0,
    "http_max_attempts": 2,
}
# Items still to scrape (raw SQL reads the stored values).
PENDING = [ItemStatus.PENDING.value, ItemStatus.ASSIGNED.value]
LIFECYCLE = [
    MissionStatus.QUEUED,
    MissionStatus.ATRIBUIDO,
    MissionStatus.EXTRAINDO,
    MissionStatus.ARMAZENANDO,
    MissionStatus.FINALIZADO,
]


class Cluster:
    """A throwaway PostgreSQL cluster owned by the `postgres` OS user."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port
        self.log = root / "server.log"

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        assert RUNUSER is not None
        return subprocess.run(
            [RUNUSER, "-u", "postgres", "--", *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )

    def init(self) -> None:
        self.run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\n"
                "max_connections = 40\n"
                "shared_buffers = 32MB\n"
                # A throwaway copy, and only the server crashes (never the OS): what
                # reached the OS survives, so fsync buys nothing here but time. Commits
                # stay synchronous: an asynchronous commit lives in WAL buffers, and an
                # immediate restart loses it after the orchestrator was told it was
                # stored (it then scraped those items again).
                "fsync = off\n"
                "full_page_writes = off\n"
            )

    def pg_ctl(self, *args: str) -> float:
        """Run pg_ctl (waiting for it to finish) and return how long it took."""
        started = time.monotonic()
        self.run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", *args)
        return time.monotonic() - started

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    missing = [str(p) for p in (PG_BIN / "initdb", PG_BIN / "pg_ctl") if not p.exists()]
    if RUNUSER is None:
        missing.append("runuser")
    if missing:
        pytest.skip(f"a private PostgreSQL cluster needs {', '.join(missing)}")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("a private PostgreSQL cluster needs a `postgres` OS user")
    if os.geteuid() != 0:
        pytest.skip("initdb/pg_ctl run as the postgres OS user: the test must run as root")
    # Not under pytest's tmp_path: its parents are private to root.
    root = Path(tempfile.mkdtemp(prefix="mc-pg-"))
    shutil.chown(root, "postgres", "postgres")
    cl = Cluster(root, free_port())
    try:
        cl.init()
        cl.pg_ctl("-t", "60", "start")
        yield cl
    finally:
        # Never started, or already down: nothing to stop.
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            cl.pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def copy_test_database(cl: Cluster) -> str:
    """The test database, as set up so far, copied into the private cluster."""
    with psycopg.connect(cl.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE mc")
    dump = subprocess.run(
        [str(PG_BIN / "pg_dump"), "--no-owner", "--no-privileges", "-d", database_url()],
        capture_output=True,
        timeout=120,
    )
    if dump.returncode and b"version mismatch" in dump.stderr:
        pytest.skip(f"{PG_BIN / 'pg_dump'} cannot dump the test server: {dump.stderr[:200]!r}")
    dump.check_returncode()
    subprocess.run(
        [str(PG_BIN / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d", cl.url("mc")],
        input=dump.stdout,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return cl.url("mc")


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def scalar(url: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    return query(url, sql, params)[0][0]


def finalized(url: str) -> int:
    """FINALIZADO missions, or -1 while the server cannot answer."""
    try:
        return int(
            scalar(url, "SELECT count(*) FROM orchestrator_mission WHERE status = 'FINALIZADO'")
        )
    except psycopg.OperationalError:
        return -1


def restart(cl: Cluster, url: str, mode: str) -> tuple[float, Any]:
    """Restart the cluster; return how long it was down and its clock once back up."""
    took = cl.pg_ctl("-m", mode, "-t", "60", "restart")
    return took, scalar(url, "SELECT now()")


def restart_under_load(cl: Cluster, url: str, worker: FakeWorker, mode: str) -> tuple[float, Any]:
    """`restart`, with items still to scrape: the worker's jobs are held while the server
    goes down, so on a fast machine the last missions cannot finish in between (the
    orchestrator would then have nothing to write after the restart)."""
    worker.jobs_paused = True
    try:
        pending = scalar(
            url, "SELECT count(*) FROM orchestrator_missionitem WHERE status = ANY(%s)", (PENDING,)
        )
        assert pending, "nothing left in flight to restart under"
        return restart(cl, url, mode)
    finally:
        worker.jobs_paused = False


def recovered_after(url: str, since: Any, instance: str) -> bool:
    """The orchestrator wrote both a mission event and a heartbeat after `since`."""
    try:
        return bool(
            scalar(
                url,
                "SELECT EXISTS (SELECT 1 FROM orchestrator_missionevent WHERE created_at > %s)"
                " AND EXISTS (SELECT 1 FROM orchestrator_orchestratorinstance"
                " WHERE name = %s AND heartbeat_at > %s)",
                (since, instance, since),
            )
        )
    except psycopg.OperationalError:
        return False


def state(url: str) -> str:
    """Missions by status and the instance's heartbeat, for a failure message."""
    try:
        missions = query(url, "SELECT status, count(*) FROM orchestrator_mission GROUP BY 1")
        beats = query(
            url, "SELECT name, heartbeat_at, now() FROM orchestrator_orchestratorinstance"
        )
    except psycopg.OperationalError as exc:
        return f"the server does not answer: {exc}"
    return f"missions {dict(missions)}; instances {beats}"


def wait_for_recovery(url: str, since: Any, instance: str, log: Path, what: str) -> None:
    try:
        wait_for(lambda: recovered_after(url, since, instance), 30, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{state(url)}\n{log.read_text()[-3000:]}") from None


def first_write_after(url: str, since: Any) -> float:
    return float(
        scalar(
            url,
            "SELECT extract(epoch FROM min(created_at) - %s) FROM orchestrator_missionevent"
            " WHERE created_at > %s",
            (since, since),
        )
    )


def twice_scraped(worker: FakeWorker) -> dict[str, list[tuple[str, str, str, int]]]:
    """Items sent in more than one job: (job key, status, session, results) of each, for
    the failure message."""
    jobs: dict[str, list[tuple[str, str, str, int]]] = {}
    for job in worker.jobs.values():
        for item in job.items:
            jobs.setdefault(str(item.get("item_id")), []).append(
                (job.job_key, job.status, job.session_id, len(job.results))
            )
    return {item: seen for item, seen in jobs.items() if len(seen) > 1}


def test_the_orchestrator_rides_out_postgresql_restarts_under_load(
    cluster: Cluster, make_fake_worker: Any, fake_writer: FakeWriter, tmp_path: Path
) -> None:
    worker: FakeWorker = make_fake_worker(max_sessions=8, item_latency=0.3)
    for key, value in CONFIG.items():
        config.set_value(key, value)
    factories.WorkerFactory(base_url=worker.base_url, api_key=worker.api_key, max_sessions=8)
    factories.WriterFactory(
        base_url=fake_writer.base_url, api_key=fake_writer.api_key, is_default=True
    )
    for i in range(16):
        factories.ProxyFactory(external_id=f"px-{i}", type="datacenter")
    factories.SiteConfigFactory(
        domain="*", proxy_types=["datacenter"], items_per_job=5, max_sessions=2
    )
    ids = [
        actions.create_mission(
            name=f"M{m}", urls=[f"https://shop{m % 5}.example/p/{m}/{i}" for i in range(ITEMS)]
        ).pk
        for m in range(MISSIONS)
    ]
    url = copy_test_database(cluster)
    log = tmp_path / "orch.log"
    name = "restart-survivor"
    proc = spawn("run_orchestrator", "--name", name, log=log, DATABASE_URL=url)
    figures: dict[str, float] = {}
    try:
        wait_for(lambda: finalized(url) >= 2, 120, "the first missions FINALIZADO")
        figures["fast_down_s"], up_at = restart_under_load(cluster, url, worker, "fast")
        wait_for_recovery(url, up_at, name, log, "writes after the restart")
        figures["fast_recover_s"] = first_write_after(url, up_at)
        assert proc.poll() is None, log.read_text()[-3000:]

        # The LISTEN connection reconnects on its own backoff (up to 5 s between tries):
        # the second restart must find it open again, or it has nothing to lose.
        wait_for(lambda: log.read_text().count("LISTEN reconnected") >= 1, 30, "LISTEN reconnected")
        # Then a crash of the server (no shutdown checkpoint: recovery replays the WAL).
        figures["immediate_down_s"], up_at = restart_under_load(cluster, url, worker, "immediate")
        wait_for_recovery(url, up_at, name, log, "writes after the crash restart")
        figures["immediate_recover_s"] = first_write_after(url, up_at)

        started = time.monotonic()
        wait_for(lambda: finalized(url) == MISSIONS, 120, "every mission FINALIZADO")
        figures["finish_after_s"] = time.monotonic() - started
        wait_for(
            lambda: (
                not scalar(
                    url,
                    "SELECT EXISTS (SELECT 1 FROM orchestrator_browsersession WHERE holds_slot)",
                )
            ),
            30,
            "every session closed",
        )
        # Never restarted: the same process, one instance row, one start.
        assert proc.poll() is None, log.read_text()[-3000:]
        assert query(
            url,
            "SELECT pid, stopped_at FROM orchestrator_orchestratorinstance WHERE name = %s",
            (name,),
        ) == [(proc.pid, None)]
    finally:
        code = stop(proc)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert text.count(f"orchestrator {name} running") == 1
    # Each outage logged at most once, and each one logged is logged over. A manager
    # thread that was between ticks during a restart never sees it (Django's health
    # check replaces the connection before the next query). The LISTEN connection,
    # always open, sees both.
    outages = text.count("database unavailable")
    assert outages <= 2, text[-3000:]
    assert text.count("database reachable again") == outages
    assert text.count("LISTEN reconnected") == 2
    assert "tick failed" not in text
    assert scalar(
        url,
        "SELECT stopped_at IS NOT NULL FROM orchestrator_orchestratorinstance WHERE name = %s",
        (name,),
    )

    # Every mission went through the lifecycle once, on its first attempt.
    histories: dict[int, list[str]] = {m: [] for m in ids}
    for mission_id, to_status in query(
        url,
        "SELECT mission_id, to_status FROM orchestrator_missionevent"
        " WHERE kind = 'transition' ORDER BY id",
    ):
        histories[mission_id].append(to_status)
    assert all(h == LIFECYCLE for h in histories.values()), histories
    assert query(
        url,
        "SELECT DISTINCT attempt, done_items, records_delivered FROM orchestrator_mission",
    ) == [(1, ITEMS, ITEMS)]
    # Nothing stored, scraped or opened twice.
    assert [fake_writer.stored_count(m) for m in ids] == [ITEMS] * MISSIONS
    assert len(fake_writer.records) == sum(b.stored for b in fake_writer.batches.values())
    # (`complete` may be repeated if FINALIZADO was not recorded: it is idempotent.)
    assert set(fake_writer.completed) == set(ids)
    assert len(worker.jobs) == len(set(worker.job_keys_seen))
    assert sum(len(job.items) for job in worker.jobs.values()) == MISSIONS * ITEMS, (
        twice_scraped(worker),
        text[-4000:],
    )
    assert len(worker.sessions) == scalar(url, "SELECT count(*) FROM orchestrator_browsersession")
    assert scalar(url, "SELECT active_sessions FROM registry_worker") == 0
    print("\n" + ", ".join(f"{k}={v:.1f}" for k, v in figures.items()))
