"""pytest fixtures for the fakes. Import them into tests/conftest.py with::

    from tests.fakes.fixtures import *  # noqa: F403

Each fixture starts a fresh server for one test and stops it afterwards. The factories
start more (with options) and stop them all at teardown::

    def test_it(fake_worker, make_fake_worker):
        second = make_fake_worker(max_sessions=1, api_key="other")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fakes.etl import FakeEtl
from tests.fakes.uploader import FakeUploader
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter

__all__ = [
    "FAKE_ETL_KEY",
    "FAKE_UPLOADER_KEY",
    "FAKE_WORKER_KEY",
    "FAKE_WRITER_KEY",
    "fake_etl",
    "fake_uploader",
    "fake_worker",
    "fake_writer",
    "make_fake_etl",
    "make_fake_worker",
    "make_fake_writer",
]

FAKE_WORKER_KEY = "fake-worker-key"
FAKE_WRITER_KEY = "fake-writer-key"
FAKE_ETL_KEY = "fake-etl-key"
FAKE_UPLOADER_KEY = "fake-uploader-key"


def _assert_no_fake_bugs(server: FakeWorker | FakeWriter | FakeEtl) -> None:
    assert not server.errors, "the fake itself crashed:\n" + "\n".join(server.errors)


@pytest.fixture
def make_fake_worker() -> Iterator[Callable[..., FakeWorker]]:
    started: list[FakeWorker] = []

    def make(**opts: Any) -> FakeWorker:
        opts.setdefault("api_key", FAKE_WORKER_KEY)
        worker = FakeWorker(**opts).start()
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()
    for worker in started:
        _assert_no_fake_bugs(worker)


@pytest.fixture
def make_fake_writer() -> Iterator[Callable[..., FakeWriter]]:
    started: list[FakeWriter] = []

    def make(**opts: Any) -> FakeWriter:
        opts.setdefault("api_key", FAKE_WRITER_KEY)
        writer = FakeWriter(**opts).start()
        started.append(writer)
        return writer

    yield make
    for writer in started:
        writer.stop()
    for writer in started:
        _assert_no_fake_bugs(writer)


@pytest.fixture
def make_fake_etl() -> Iterator[Callable[..., FakeEtl]]:
    started: list[FakeEtl] = []

    def make(**opts: Any) -> FakeEtl:
        opts.setdefault("api_key", FAKE_ETL_KEY)
        etl = FakeEtl(**opts).start()
        started.append(etl)
        return etl

    yield make
    for etl in started:
        etl.stop()
    for etl in started:
        _assert_no_fake_bugs(etl)


@pytest.fixture
def fake_worker(make_fake_worker: Callable[..., FakeWorker]) -> FakeWorker:
    """A running FakeWorker, key ``fake-worker-key``, 8 slots, zero latency."""
    return make_fake_worker()


@pytest.fixture
def fake_writer(make_fake_writer: Callable[..., FakeWriter]) -> FakeWriter:
    """A running FakeWriter, key ``fake-writer-key``, max_batch_records 1000."""
    return make_fake_writer()


@pytest.fixture
def fake_etl(make_fake_etl: Callable[..., FakeEtl]) -> FakeEtl:
    """A running FakeEtl, key ``fake-etl-key``, plain field names."""
    return make_fake_etl()


@pytest.fixture
def fake_uploader() -> Iterator[FakeUploader]:
    """A running FakeUploader, key ``fake-uploader-key``."""
    with FakeUploader(api_key=FAKE_UPLOADER_KEY) as server:
        yield server
