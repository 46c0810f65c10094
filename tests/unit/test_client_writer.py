"""WriterClient against docs/contracts/writer-api.md, on respx. respx sees httpx clients
only, so each client here is given one; the shared path of a plain-http service
(`clients.http1`) is tested against real loopback servers in test_clients_http1."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
import respx

from orchestrator.clients.base import ClientSettings, ServiceError
from orchestrator.clients.writer import WriterClient
from registry.config import Config
from registry.models import Writer

BASE = "http://writer.test/api/v1"
KEY = "writer-key-SECRET-7"
FAST = ClientSettings(deadline=5, max_attempts=3, backoff_base=0.001)
MISSION = {"id": 42, "name": "Catálogo loja X", "domain": "example.com", "run_id": "r-5"}
RECORDS = [
    {
        "item_id": "1001",
        "url": "https://example.com/p/1",
        "fetched_at": "2026-11-22T10:00:07Z",
        "http_status": 200,
        "data": {"title": "Camisa"},
    }
]


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
def writer() -> WriterClient:
    return WriterClient(BASE, KEY, FAST, http=httpx.Client())


def err(status: int, code: str, message: str = "", **extra: object) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, **extra}})


def test_health(api: respx.MockRouter, writer: WriterClient) -> None:
    api.get("/health").respond(
        200, json={"status": "ok", "version": "2.0", "max_batch_records": 1000, "x": 1}
    )
    health = writer.health()
    assert (health.status, health.version, health.max_batch_records) == ("ok", "2.0", 1000)


def test_write_batch_sends_the_batch_and_reads_the_ack(
    api: respx.MockRouter, writer: WriterClient
) -> None:
    route = api.post("/batches").respond(
        201, json={"batch_id": "b-1", "stored": 1, "duplicates": 0, "duplicate": False, "ms": 3}
    )
    ack = writer.write_batch("m42-j-77-c0003", MISSION, RECORDS)
    assert (ack.batch_id, ack.stored, ack.duplicates, ack.duplicate) == ("b-1", 1, 0, False)
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {
        "batch_key": "m42-j-77-c0003",
        "mission": MISSION,
        "records": RECORDS,
    }


def test_a_repeated_batch_is_a_duplicate(api: respx.MockRouter, writer: WriterClient) -> None:
    api.post("/batches").respond(
        200, json={"batch_id": "b-1", "stored": 0, "duplicates": 1, "duplicate": True}
    )
    ack = writer.write_batch("m42-j-77-c0003", MISSION, RECORDS)
    assert ack.duplicate
    assert ack.duplicates == 1


def test_write_batch_is_retried_with_the_same_batch_key(
    api: respx.MockRouter, writer: WriterClient
) -> None:
    route = api.post("/batches").mock(
        side_effect=[
            err(503, "unavailable", "flushing"),
            httpx.Response(429, headers={"Retry-After": "0"}),
            httpx.Response(201, json={"batch_id": "b-9", "stored": 1, "duplicates": 0}),
        ]
    )
    ack = writer.write_batch("k-1", MISSION, RECORDS)
    assert ack.batch_id == "b-9"
    assert ack.duplicate is False
    assert route.call_count == 3
    assert {json.loads(c.request.content)["batch_key"] for c in route.calls} == {"k-1"}


def test_batch_too_large_is_permanent_so_the_caller_splits(
    api: respx.MockRouter, writer: WriterClient
) -> None:
    route = api.post("/batches").mock(return_value=err(413, "batch_too_large", "max 1000"))
    with pytest.raises(ServiceError) as info:
        writer.write_batch("k", MISSION, RECORDS)
    assert info.value.code == "batch_too_large"
    assert info.value.status == 413
    assert not info.value.transient
    assert route.call_count == 1


def test_invalid_records_carry_their_fields(api: respx.MockRouter, writer: WriterClient) -> None:
    api.post("/batches").mock(
        return_value=err(422, "invalid_records", "2 invalid", fields={"records[0].url": "missing"})
    )
    with pytest.raises(ServiceError) as info:
        writer.write_batch("k", MISSION, RECORDS)
    assert info.value.code == "invalid_records"
    assert info.value.fields == {"records[0].url": "missing"}
    assert not info.value.transient
    assert not info.value.infrastructure


def test_an_ack_without_batch_id_is_invalid(api: respx.MockRouter, writer: WriterClient) -> None:
    api.post("/batches").respond(201, json={"stored": 1})
    with pytest.raises(ServiceError) as info:
        writer.write_batch("k", MISSION, RECORDS)
    assert info.value.code == "invalid_response"


def test_a_writer_that_stays_down_fails_transiently_without_leaking_the_key(
    api: respx.MockRouter, writer: WriterClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    route = api.post("/batches").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ServiceError) as info:
        writer.write_batch("k", MISSION, RECORDS)
    assert info.value.code == "connect_error"
    assert info.value.transient
    assert info.value.infrastructure
    assert route.call_count == FAST.max_attempts
    assert KEY not in caplog.text
    assert KEY not in str(info.value)


def test_complete_mission(api: respx.MockRouter, writer: WriterClient) -> None:
    route = api.post("/missions/42/complete").respond(
        200, json={"mission_id": 42, "stored_records": 4980}
    )
    ack = writer.complete_mission(42, "r-5", 4980)
    assert (ack.mission_id, ack.stored_records) == ("42", 4980)
    assert json.loads(route.calls.last.request.content) == {"run_id": "r-5", "total_records": 4980}


def test_count_mismatch_is_permanent_and_carries_the_writer_count(
    api: respx.MockRouter, writer: WriterClient
) -> None:
    route = api.post("/missions/42/complete").mock(
        return_value=err(
            409, "count_mismatch", "holds 4975", stored_records=4975, total_records=4980
        )
    )
    with pytest.raises(ServiceError) as info:
        writer.complete_mission(42, None, 4980)
    assert info.value.code == "count_mismatch"
    assert not info.value.transient
    assert info.value.body is not None
    assert info.value.body["stored_records"] == 4975
    assert route.call_count == 1
    assert json.loads(route.calls.last.request.content) == {"run_id": None, "total_records": 4980}


def test_for_writer_builds_from_a_registry_row(api: respx.MockRouter) -> None:
    api.get("/health").respond(200, json={"status": "ok"})
    row = Writer(name="w", base_url=BASE + "/", api_key="")
    client = WriterClient.for_writer(row, Config({"http_max_attempts": 5}), http=httpx.Client())
    assert client.settings.max_attempts == 5
    assert client.health().max_batch_records is None
    assert "Authorization" not in api.calls.last.request.headers
