"""django-q2 on both brokers: the settings pick Redis when REDIS_URL is set and the ORM
otherwise, and a real `qcluster` runs tasks through each.

Redis tests use MC_TEST_REDIS_URL (default redis://127.0.0.1:6379/15) and skip with the
reason when the `redis` package or the server is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django_q.brokers import Broker
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import Task
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from tests.e2e.processes import spawn, stop, wait_for

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TASK = "orchestrator.tasks.recompute_counters"


def redis_or_skip() -> str:
    try:
        import redis
    except ImportError:
        pytest.skip("the `redis` package is not installed (pip install redis)")
    try:
        redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    return REDIS_URL


@pytest.fixture
def redis_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[Broker]:
    url = redis_or_skip()
    from django_q.brokers.redis_broker import Redis

    # Conf is read once at import; point it at the test database for this test only.
    monkeypatch.setattr(Conf, "REDIS", url)
    broker = Redis(list_key=Conf.CLUSTER_NAME)
    broker.purge_queue()
    yield broker
    broker.purge_queue()


def broker_in_a_fresh_process(**env: str) -> str:
    """What a process started with `env` picks: the broker class and its connection."""
    code = (
        "import django; django.setup()\n"
        "from django.conf import settings\n"
        "from django_q.brokers import get_broker\n"
        "b = get_broker()\n"
        "print(type(b).__name__, settings.Q_CLUSTER.get('redis', ''),"
        " settings.Q_CLUSTER.get('orm', ''))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "mission_control.settings",
            "DEBUG": "1",
            "DATABASE_URL": "sqlite:////tmp/mc-broker-choice.sqlite3",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_the_settings_pick_the_orm_broker_without_redis_url() -> None:
    assert broker_in_a_fresh_process(REDIS_URL="") == "ORM  default"


def test_the_settings_pick_the_redis_broker_from_redis_url() -> None:
    pytest.importorskip("redis", reason="the `redis` package is not installed")

    choice = broker_in_a_fresh_process(REDIS_URL="redis://cache.internal:6380/2")

    assert choice == "Redis redis://cache.internal:6380/2"


# Same group as the qcluster tests: they share the Redis queue this one purges.
@pytest.mark.xdist_group("processes")
def test_a_task_round_trips_through_redis(redis_broker: Broker) -> None:
    task_id = async_task(TASK, sync=False, broker=redis_broker)

    assert redis_broker.queue_size() == 1
    [(_ack_id, package)] = redis_broker.dequeue()
    task: dict[str, Any] = SignedPackage.loads(package)
    assert (task["id"], task["func"]) == (task_id, TASK)
    assert redis_broker.queue_size() == 0


def _run_qcluster_task(broker: Broker, tmp_path: Path, **env: str) -> None:
    # The cluster must verify our signature (SECRET_KEY) and speak the same broker.
    proc = spawn(
        "qcluster",
        log=tmp_path / "qcluster.log",
        SECRET_KEY=settings.SECRET_KEY,
        Q_WORKERS="1",
        LOG_FORMAT="plain",
        **env,
    )
    try:
        task_id = async_task(TASK, sync=False, broker=broker)
        wait_for(
            lambda: Task.objects.filter(id=task_id).exists(),
            60,
            f"the qcluster to run {TASK}",
            poll=0.3,
        )
    finally:
        code = stop(proc, timeout=60)
    log = (tmp_path / "qcluster.log").read_text(errors="replace")
    task = Task.objects.get(id=task_id)
    assert task.success, (task.result, log[-3000:])
    assert task.result == {"workers": 0, "proxies": 0}
    assert code == 0, log[-3000:]


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.xdist_group("processes")
def test_a_qcluster_runs_tasks_from_the_orm_broker(tmp_path: Path) -> None:
    _run_qcluster_task(ORM(list_key=Conf.CLUSTER_NAME), tmp_path, REDIS_URL="")


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.xdist_group("processes")
def test_a_qcluster_runs_tasks_from_the_redis_broker(redis_broker: Broker, tmp_path: Path) -> None:
    _run_qcluster_task(redis_broker, tmp_path, REDIS_URL=REDIS_URL)
