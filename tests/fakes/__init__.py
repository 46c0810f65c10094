"""Fake Worker, Writer and ETL servers speaking the contracts over real HTTP on loopback.

Use them through the pytest fixtures in ``tests.fakes.fixtures`` or directly::

    with FakeWorker(api_key="k") as worker:
        httpx.get(f"{worker.base_url}/health", headers={"Authorization": "Bearer k"})
"""

from __future__ import annotations

from tests.fakes.etl import FakeEtl
from tests.fakes.server import ApiError, Call, FakeServer
from tests.fakes.worker import FakeJob, FakeSession, FakeWorker
from tests.fakes.writer import FakeBatch, FakeWriter

__all__ = [
    "ApiError",
    "Call",
    "FakeBatch",
    "FakeEtl",
    "FakeJob",
    "FakeServer",
    "FakeSession",
    "FakeWorker",
    "FakeWriter",
]
