"""Targets for the contract suites (docs/contracts/worker-api.md and writer-api.md).

The suites in this folder talk plain HTTP (httpx) to a *target*: something that serves
the contract. Today the only target is the fake in ``tests/fakes``; the suites are meant
to run unchanged against every implementation we ship.

EXTENSION POINT — adding a target (e.g. the built-in ``localnode`` worker behind Django's
``live_server``) is one function and one dict entry::

    @contextmanager
    def _localnode_worker(request: pytest.FixtureRequest) -> Iterator[WorkerTarget]:
        live_server = request.getfixturevalue("live_server")  # needs the db: see below
        yield WorkerTarget(
            name="localnode",
            base_url=f"{live_server.url}/local/worker/api/v1",
            api_key="...",
            url_ok=lambda n: f"{live_server.url}/local/test-pages/ok/{n}",
            url_404=lambda n: f"{live_server.url}/local/test-pages/missing/{n}",
            url_blocked=lambda n: f"{live_server.url}/local/test-pages/status/403/{n}",
            url_slow=lambda n: f"{live_server.url}/local/test-pages/slow/{n}",
        )

    WORKER_TARGETS["localnode"] = _localnode_worker

A target only has to provide URLs that produce each result kind: ``url_ok`` (status
``ok``), ``url_404`` (``http_error`` with 404), ``url_blocked`` (``blocked``) and
``url_slow`` (keeps its job running for a while so that ``session_busy`` and paging of
a running job can be observed; ``release_slow(job_id)`` may make it finish early, else
the suite waits up to ``slow_deadline_s``). Optional hooks (``hold_creating``) enable
tests a target cannot otherwise reach; without them those tests are skipped.
Targets backed by the database request ``db``/``live_server`` themselves; the fake
needs no database. Writers work the same way with ``WriterTarget`` and
``WRITER_TARGETS``.

Waiting is always a poll with a deadline (``wait_job_finished``, ``wait_until``),
never a bare sleep.
"""

from __future__ import annotations

import functools
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.patience import Deadline

REQUEST_TIMEOUT = httpx.Timeout(5.0)


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One context for every client: httpx builds a new one per client otherwise, which
    costs ~0.2 s (certifi) per test."""
    return ssl.create_default_context()


def make_client(base_url: str, api_key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(
        base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT, verify=shared_ssl_context()
    )


def unique(prefix: str) -> str:
    """A key no earlier run of the suite has used (targets may keep state)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def unique_mission_id() -> int:
    return 10**6 + uuid.uuid4().int % 10**9


def wait_until(
    probe: Callable[[], Any], *, deadline_s: float = 10.0, interval_s: float = 0.02
) -> Any:
    """Call ``probe`` until it returns something truthy; fail after ``deadline_s``."""
    deadline = Deadline(deadline_s)  # counted in the machine's time (tests.patience)
    while True:
        value = probe()
        if value:
            return value
        if deadline.expired():
            pytest.fail(f"condition not met within {deadline_s}s (last value: {value!r})")
        time.sleep(interval_s)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The contract's error shape; returns the ``error`` object."""
    assert response.status_code == status, response.text
    body = response.json()
    error = body["error"]
    assert error["code"] == code, body
    assert isinstance(error["message"], str)
    if "fields" in error:
        assert isinstance(error["fields"], dict)
    return error


# --------------------------------------------------------------------------- worker
@dataclass
class WorkerTarget:
    name: str
    base_url: str
    api_key: str | None
    url_ok: Callable[[int], str]
    url_404: Callable[[int], str]
    url_blocked: Callable[[int], str]
    url_slow: Callable[[int], str]
    release_slow: Callable[[str], None] | None = None  # job id → its slow items finish
    slow_deadline_s: float = 30.0
    # Keeps new sessions in "creating" while the context is open (None: not supported).
    hold_creating: Callable[[], AbstractContextManager[None]] | None = None
    fake: FakeWorker | None = None  # set for the fake, for fake-only assertions

    def client(self, *, api_key: str | None = None) -> httpx.Client:
        return make_client(self.base_url, self.api_key if api_key is None else api_key)


@contextmanager
def _fake_worker(request: pytest.FixtureRequest) -> Iterator[WorkerTarget]:
    fake = FakeWorker(api_key="contract-worker-key", max_sessions=3, slow_item_s=3600.0)

    @contextmanager
    def hold_creating() -> Iterator[None]:
        fake.ready_delay = float("inf")
        try:
            yield
        finally:
            fake.ready_delay = 0.0

    with fake:
        yield WorkerTarget(
            name="fake",
            base_url=fake.base_url,
            api_key=fake.api_key,
            url_ok=lambda n: f"https://shop.example/p/{n}",
            url_404=lambda n: f"https://shop.example/status/404/{n}",
            url_blocked=lambda n: f"https://shop.example/status/403/{n}",
            url_slow=lambda n: f"https://shop.example/slow/{n}",
            release_slow=fake.advance_job,
            hold_creating=hold_creating,
            fake=fake,
        )
    assert not fake.errors, "\n".join(fake.errors)


# --------------------------------------------------------------- localnode targets
# The built-in worker and writer (``localnode``) behind ``live_server``, registered in
# WORKER_TARGETS / WRITER_TARGETS below. Jobs run in a ``localnode.runner.Runner``
# thread; ``url_slow`` is a demo page held until ``release_slow`` (or 30 s).
LOCALNODE_KEY = "contract-localnode-key"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the localnode runs as database tests: pytest-django creates the test database
    only for collected items that declare it, not for a fixture that asks at run time."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "localnode" in (params.get("worker_target"), params.get("writer_target")):
            item.add_marker(pytest.mark.django_db(transaction=True))


def _localnode_url(request: pytest.FixtureRequest, *, with_runner: bool) -> str:
    request.getfixturevalue("transactional_db")
    from django.db import connection

    if with_runner and connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip(
            "localnode target needs PostgreSQL or a file SQLite: the in-memory test "
            "database locks whole tables when live_server and the runner overlap"
        )
    settings = request.getfixturevalue("settings")
    settings.LOCALNODE_API_KEY = LOCALNODE_KEY
    # LOCALNODE_ENABLED defaults to off on PostgreSQL: mount the local node explicitly.
    settings.ROOT_URLCONF = "localnode.root_urls"
    url: str = request.getfixturevalue("live_server").url
    return url


@contextmanager
def _localnode_worker(request: pytest.FixtureRequest) -> Iterator[WorkerTarget]:
    import threading

    from django.db import connections

    from localnode import demo
    from localnode.models import LocalJob
    from localnode.runner import Runner

    url = _localnode_url(request, with_runner=True)
    hold = unique("hold")
    runner = Runner(name="contract-localnode")

    def run() -> None:
        try:
            runner.run_forever(poll_s=0.05)
        finally:
            connections.close_all()

    def release_slow(job_id: str) -> None:
        job = LocalJob.objects.get(pk=int(job_id.removeprefix("j-")))
        for item in job.items:
            if "/local/demo/hold/" in item["url"]:
                demo.release(item["url"].split("/local/demo/hold/")[1].split("/")[0])

    thread = threading.Thread(target=run, name="localnode-runner", daemon=True)
    thread.start()
    try:
        yield WorkerTarget(
            name="localnode",
            base_url=f"{url}/local/worker/api/v1",
            api_key=LOCALNODE_KEY,
            url_ok=lambda n: f"{url}/local/demo/p/1/?n={n}",
            url_404=lambda n: f"{url}/local/demo/status/404/?n={n}",
            url_blocked=lambda n: f"{url}/local/demo/status/403/?n={n}",
            url_slow=lambda n: f"{url}/local/demo/hold/{hold}-{n}/?s=30",
            release_slow=release_slow,
        )
    finally:
        demo.release(hold)
        runner.stop()
        thread.join(60)


@contextmanager
def _localnode_writer(request: pytest.FixtureRequest) -> Iterator[WriterTarget]:
    url = _localnode_url(request, with_runner=False)
    yield WriterTarget(
        name="localnode", base_url=f"{url}/local/writer/api/v1", api_key=LOCALNODE_KEY
    )


# ----------------------------------------------------------- end of localnode targets


WORKER_TARGETS: dict[str, Callable[[pytest.FixtureRequest], AbstractContextManager[WorkerTarget]]]
WORKER_TARGETS = {"fake": _fake_worker}
WORKER_TARGETS["localnode"] = _localnode_worker  # see "localnode targets" above


@pytest.fixture(params=sorted(WORKER_TARGETS))
def worker_target(request: pytest.FixtureRequest) -> Iterator[WorkerTarget]:
    with WORKER_TARGETS[request.param](request) as target:
        yield target


@dataclass
class WorkerApi:
    """An authenticated client for one test; closes the sessions it opened at teardown."""

    target: WorkerTarget
    client: httpx.Client
    opened: list[str] = field(default_factory=list)

    def create_session(self, **body: Any) -> httpx.Response:
        body.setdefault("session_key", unique("ct-s"))
        response = self.client.post("/sessions", json=body)
        if response.status_code in (200, 201):
            self.opened.append(response.json()["id"])
        return response

    def ready_session(self, **body: Any) -> dict[str, Any]:
        response = self.create_session(**body)
        assert response.status_code == 201, response.text
        session: dict[str, Any] = response.json()
        if session["status"] != "ready":
            session = self.wait_session_status(session["id"], {"ready"})
        return session

    def wait_session_status(self, session_id: str, statuses: set[str]) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            s: dict[str, Any] = self.client.get(f"/sessions/{session_id}").json()
            return s if s["status"] in statuses else None

        return wait_until(probe)

    def create_job(
        self, session_id: str, urls: list[str], **body: Any
    ) -> tuple[httpx.Response, list[dict[str, str]]]:
        items = [{"item_id": f"i{n}", "url": url} for n, url in enumerate(urls)]
        body.setdefault("job_key", unique("ct-j"))
        body.setdefault("items", items)
        return self.client.post(f"/sessions/{session_id}/jobs", json=body), items

    def wait_job_finished(self, job_id: str, deadline_s: float = 10.0) -> dict[str, Any]:
        """Poll GET /jobs/{id} until it is completed, failed or cancelled."""

        def probe() -> dict[str, Any] | None:
            job: dict[str, Any] = self.client.get(f"/jobs/{job_id}").json()
            return job if job["status"] in ("completed", "failed", "cancelled") else None

        return wait_until(probe, deadline_s=deadline_s)

    def results_page(
        self, job_id: str, cursor: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        params: dict[str, str | int] = {}
        if cursor is not None:
            params["cursor"] = cursor
        if limit is not None:
            params["limit"] = limit
        response = self.client.get(f"/jobs/{job_id}/results", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def walk_results(
        self, job_id: str, limit: int, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Page a finished job to its end; returns (results, pages)."""
        results: list[dict[str, Any]] = []
        pages: list[dict[str, Any]] = []
        for _ in range(10_000):
            page = self.results_page(job_id, cursor, limit)
            pages.append(page)
            results.extend(page["results"])
            if page["next_cursor"] is None:
                return results, pages
            cursor = page["next_cursor"]
        pytest.fail("paging never ended")

    def close_all(self) -> None:
        for session_id in self.opened:
            self.client.delete(f"/sessions/{session_id}")


@pytest.fixture
def worker_api(worker_target: WorkerTarget) -> Iterator[WorkerApi]:
    with worker_target.client() as client:
        api = WorkerApi(worker_target, client)
        yield api
        api.close_all()


# --------------------------------------------------------------------------- writer
@dataclass
class WriterTarget:
    name: str
    base_url: str
    api_key: str | None
    fake: FakeWriter | None = None

    def client(self, *, api_key: str | None = None) -> httpx.Client:
        return make_client(self.base_url, self.api_key if api_key is None else api_key)


@contextmanager
def _fake_writer(request: pytest.FixtureRequest) -> Iterator[WriterTarget]:
    with FakeWriter(api_key="contract-writer-key", max_batch_records=10) as fake:
        yield WriterTarget(name="fake", base_url=fake.base_url, api_key=fake.api_key, fake=fake)
    assert not fake.errors, "\n".join(fake.errors)


WRITER_TARGETS: dict[str, Callable[[pytest.FixtureRequest], AbstractContextManager[WriterTarget]]]
WRITER_TARGETS = {"fake": _fake_writer}
WRITER_TARGETS["localnode"] = _localnode_writer  # see "localnode targets" above


@pytest.fixture(params=sorted(WRITER_TARGETS))
def writer_target(request: pytest.FixtureRequest) -> Iterator[WriterTarget]:
    with WRITER_TARGETS[request.param](request) as target:
        yield target


@pytest.fixture
def writer_client(writer_target: WriterTarget) -> Iterator[httpx.Client]:
    with writer_target.client() as client:
        yield client
