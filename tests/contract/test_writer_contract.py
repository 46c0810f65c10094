"""docs/contracts/writer-api.md, checked over HTTP against every ``writer_target``.

The last section checks switches of the fake itself (``fake_writer`` fixture).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.contract.conftest import (
    WriterTarget,
    assert_error,
    make_client,
    unique,
    unique_mission_id,
)
from tests.fakes.writer import FakeWriter


def _records(ids: range | list[int], prefix: str = "") -> list[dict[str, Any]]:
    return [
        {
            "item_id": f"{prefix}{n}",
            "url": f"https://shop.example/p/{n}",
            "fetched_at": "2026-01-02T03:04:05+00:00",
            "http_status": 200,
            "data": {"title": f"Produto {n}", "text_length": 100, "links": 3},
        }
        for n in ids
    ]


def _batch(mission_id: int, records: list[dict[str, Any]], key: str | None = None) -> Any:
    return {
        "batch_key": key or unique("ct-b"),
        "mission": {
            "id": mission_id,
            "name": "Catálogo loja X",
            "domain": "shop.example",
            "run_id": "r-5",
        },
        "records": records,
    }


def _complete(client: httpx.Client, mission_id: int, total: int) -> httpx.Response:
    return client.post(
        f"/missions/{mission_id}/complete", json={"run_id": "r-5", "total_records": total}
    )


def _max_batch(client: httpx.Client) -> int:
    return int(client.get("/health").json()["max_batch_records"])


# ---------------------------------------------------------------------- general
def test_health_reports_status_version_and_max_batch_records(
    writer_client: httpx.Client,
) -> None:
    response = writer_client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] in ("ok", "degraded")
    assert isinstance(body["version"], str)
    assert isinstance(body["max_batch_records"], int)
    assert body["max_batch_records"] >= 1


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/health"), ("POST", "/batches"), ("POST", "/missions/1/complete")],
)
@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_it_answers_401_without_the_right_bearer_key(
    writer_target: WriterTarget, method: str, path: str, key: str | None
) -> None:
    if not writer_target.api_key:
        pytest.skip("target has no key")
    mission_id = unique_mission_id()
    with make_client(writer_target.base_url, key) as client:
        response = client.request(method, path, json=_batch(mission_id, _records(range(1))))
    assert response.status_code == 401
    assert isinstance(response.json()["error"]["code"], str)
    if writer_target.fake is not None:
        assert not writer_target.fake.records


@pytest.mark.parametrize("path", ["/batches", "/missions/1/complete"])
def test_it_answers_400_invalid_json_to_a_body_that_is_not_json(
    writer_client: httpx.Client, path: str
) -> None:
    response = writer_client.post(
        path, content=b'{"batch_key": ', headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"batch_key": None}, "batch_key"),
        ({"batch_key": "has space"}, "batch_key"),
        ({"mission": None}, "mission"),
        ({"mission": {"name": "no id"}}, "mission"),
        ({"records": None}, "records"),
        ({"records": "1001"}, "records"),
    ],
    ids=["no-key", "bad-key", "no-mission", "mission-without-id", "no-records", "records-str"],
)
def test_it_rejects_a_malformed_batch_with_422(
    writer_client: httpx.Client, change: dict[str, Any], field: str
) -> None:
    body = _batch(unique_mission_id(), _records(range(1)))
    for name, value in change.items():
        if value is None:
            del body[name]
        else:
            body[name] = value
    response = writer_client.post("/batches", json=body)
    error = assert_error(response, 422, "invalid_request")
    assert any(name.split("[")[0].split(".")[0] == field for name in error["fields"])


def test_unknown_request_fields_are_ignored(writer_client: httpx.Client) -> None:
    mission_id = unique_mission_id()
    body = _batch(mission_id, _records(range(2)))
    body["compression"] = "none"
    body["mission"]["owner"] = "ops"
    body["records"][0]["screenshot_url"] = "https://files.example/1.png"
    assert writer_client.post("/batches", json=body).status_code == 201
    response = writer_client.post(
        f"/missions/{mission_id}/complete",
        json={"run_id": "r-5", "total_records": 2, "reason": "done"},
    )
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------- batches
def test_a_batch_is_stored_once_and_its_key_answers_200_duplicate(
    writer_client: httpx.Client,
) -> None:
    body = _batch(unique_mission_id(), _records(range(3)))
    first = writer_client.post("/batches", json=body)
    assert first.status_code == 201, first.text
    created = first.json()
    assert created["stored"] == 3
    assert created["duplicates"] == 0
    assert created["duplicate"] is False
    assert isinstance(created["batch_id"], str)
    second = writer_client.post("/batches", json=body)
    assert second.status_code == 200, second.text
    assert second.json()["batch_id"] == created["batch_id"]
    assert second.json()["duplicate"] is True
    assert _complete(writer_client, body["mission"]["id"], 3).status_code == 200


def test_records_already_held_are_counted_as_duplicates(writer_client: httpx.Client) -> None:
    mission_id = unique_mission_id()
    first = writer_client.post("/batches", json=_batch(mission_id, _records(range(0, 5))))
    assert first.json()["stored"] == 5
    # A page re-read after a crash overlaps the earlier batch: only the new ones are stored.
    overlap = writer_client.post("/batches", json=_batch(mission_id, _records(range(3, 8))))
    assert overlap.status_code == 201
    assert overlap.json()["stored"] == 3
    assert overlap.json()["duplicates"] == 2
    assert overlap.json()["duplicate"] is False
    assert overlap.json()["batch_id"] != first.json()["batch_id"]
    response = _complete(writer_client, mission_id, 8)
    assert response.status_code == 200, response.text
    assert response.json()["stored_records"] == 8


def test_the_same_item_id_in_another_mission_is_another_record(
    writer_client: httpx.Client,
) -> None:
    a, b = unique_mission_id(), unique_mission_id()
    assert writer_client.post("/batches", json=_batch(a, _records(range(2)))).status_code == 201
    other = writer_client.post("/batches", json=_batch(b, _records(range(2))))
    assert other.json()["stored"] == 2
    assert other.json()["duplicates"] == 0


def test_a_batch_at_max_batch_records_is_accepted(writer_client: httpx.Client) -> None:
    limit = _max_batch(writer_client)
    response = writer_client.post(
        "/batches", json=_batch(unique_mission_id(), _records(range(limit)))
    )
    assert response.status_code == 201, response.text
    assert response.json()["stored"] == limit


def test_a_batch_above_max_batch_records_is_413_and_stores_nothing(
    writer_client: httpx.Client,
) -> None:
    limit = _max_batch(writer_client)
    mission_id = unique_mission_id()
    response = writer_client.post("/batches", json=_batch(mission_id, _records(range(limit + 1))))
    assert_error(response, 413, "batch_too_large")
    assert _complete(writer_client, mission_id, 0).status_code == 200


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ({"url": "https://shop.example/p/x"}, "missing item_id"),
        ({"item_id": "", "url": "https://shop.example/p/x"}, "empty item_id"),
        ({"item_id": 7, "url": "https://shop.example/p/x"}, "item_id not a string"),
        ("not an object", "record not an object"),
    ],
)
def test_invalid_records_are_422_naming_the_record(
    writer_client: httpx.Client, bad: Any, why: str
) -> None:
    records: list[Any] = _records(range(2))
    records.insert(1, bad)
    response = writer_client.post("/batches", json=_batch(unique_mission_id(), records))
    error = assert_error(response, 422, "invalid_records")
    assert error["fields"], why
    assert any("1" in name for name in error["fields"]), error["fields"]


# -------------------------------------------------------------------- complete
def test_complete_with_the_matching_count_is_200_and_idempotent(
    writer_client: httpx.Client,
) -> None:
    mission_id = unique_mission_id()
    writer_client.post("/batches", json=_batch(mission_id, _records(range(4))))
    first = _complete(writer_client, mission_id, 4)
    assert first.status_code == 200, first.text
    assert str(first.json()["mission_id"]) == str(mission_id)
    assert first.json()["stored_records"] == 4
    again = _complete(writer_client, mission_id, 4)
    assert again.status_code == 200
    assert again.json() == first.json()


def test_complete_with_a_different_count_is_409_count_mismatch(
    writer_client: httpx.Client,
) -> None:
    mission_id = unique_mission_id()
    writer_client.post("/batches", json=_batch(mission_id, _records(range(3))))
    for total in (4, 2):
        response = _complete(writer_client, mission_id, total)
        error = assert_error(response, 409, "count_mismatch")
        assert error["stored_records"] == 3
        assert error["total_records"] == total


def test_complete_counts_distinct_records_not_records_sent(writer_client: httpx.Client) -> None:
    mission_id = unique_mission_id()
    body = _batch(mission_id, _records(range(3)))
    writer_client.post("/batches", json=body)
    writer_client.post("/batches", json=body)  # same key
    writer_client.post("/batches", json=_batch(mission_id, _records(range(3))))  # new key
    response = _complete(writer_client, mission_id, 3)
    assert response.status_code == 200, response.text
    assert response.json()["stored_records"] == 3


def test_complete_of_a_mission_without_records(writer_client: httpx.Client) -> None:
    mission_id = unique_mission_id()
    assert _complete(writer_client, mission_id, 0).json()["stored_records"] == 0
    assert_error(_complete(writer_client, mission_id, 1), 409, "count_mismatch")


# ----------------------------------------------------------- the fake's switches
def test_fake_inspection_counts_records_batches_and_duplicates(
    fake_writer: FakeWriter,
) -> None:
    with make_client(fake_writer.base_url, fake_writer.api_key) as client:
        body = _batch(42, _records(range(3)))
        client.post("/batches", json=body)
        client.post("/batches", json=body)
        client.post("/batches", json=_batch(42, _records(range(2, 4))))
        _complete(client, 42, 4)
    assert fake_writer.stored_count(42) == 4
    assert fake_writer.stored_count("42") == 4
    assert (42, "0") in fake_writer.records
    assert fake_writer.duplicate_records_received == 1
    assert fake_writer.duplicate_batches_received == 1
    assert len(fake_writer.batches) == 2
    assert fake_writer.completed == {42: {"run_id": "r-5", "total_records": 4}}
    assert fake_writer.route_counts["POST /batches"] == 3


def test_fake_fail_after_store_answers_503_then_the_retry_is_a_duplicate(
    fake_writer: FakeWriter,
) -> None:
    fake_writer.fail_after_store_next(1)
    body = _batch(7, _records(range(2)))
    with make_client(fake_writer.base_url, fake_writer.api_key) as client:
        assert_error(client.post("/batches", json=body), 503, "unavailable")
        assert fake_writer.stored_count(7) == 2
        retry = client.post("/batches", json=body)
    assert retry.status_code == 200
    assert retry.json()["duplicate"] is True
    assert fake_writer.stored_count(7) == 2


def test_fake_unavailable_and_invalid_item_ids(fake_writer: FakeWriter) -> None:
    with make_client(fake_writer.base_url, fake_writer.api_key) as client:
        fake_writer.unavailable = True
        assert_error(
            client.post("/batches", json=_batch(1, _records(range(1)))), 503, "unavailable"
        )
        assert_error(_complete(client, 1, 0), 503, "unavailable")
        fake_writer.unavailable = False
        fake_writer.invalid_item_ids = {"1"}
        response = client.post("/batches", json=_batch(1, _records(range(3))))
    error = assert_error(response, 422, "invalid_records")
    assert list(error["fields"]) == ["records[1]"]
    assert fake_writer.stored_count(1) == 0


def test_fake_fault_rates_lost_answers_and_batch_key_conflicts(fake_writer: FakeWriter) -> None:
    # The switches of the #15 storms: faults drawn at rates, an answer lost after the
    # request was handled, a batch key arriving again with other records.
    with make_client(fake_writer.base_url, fake_writer.api_key) as client:
        fake_writer.fault_rates = {"lost": 1.0}
        with pytest.raises(httpx.TransportError):
            client.post("/batches", json=_batch(3, _records(range(2)), key="k-lost"))
        assert fake_writer.stored_count(3) == 2  # handled; only the answer was lost
        fake_writer.fault_rates = {"503": 1.0}
        assert_error(
            client.post("/batches", json=_batch(3, _records(range(9)))), 503, "unavailable"
        )
        fake_writer.clear_faults()
        fake_writer.fail_after_store_rate = 1.0
        assert_error(
            client.post("/batches", json=_batch(3, _records(range(2, 4)), key="k-2")),
            503,
            "unavailable",
        )
        fake_writer.clear_faults()
        again = client.post("/batches", json=_batch(3, _records(range(4, 6)), key="k-2"))
    assert again.status_code == 200
    assert fake_writer.stored_count(3) == 4
    assert fake_writer.batch_key_conflicts == ["k-2"]
    assert fake_writer.faults_served == {"lost": 1, "503": 1, "after_store": 1}
