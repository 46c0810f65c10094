"""The local Writer API v1 (docs/contracts/writer-api.md), through Django's test client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from localnode.models import LocalBatch, LocalCompletion, LocalRecord

pytestmark = [pytest.mark.django_db, pytest.mark.urls("localnode.root_urls")]

BASE = "/local/writer/api/v1"
KEY = "local-writer-key"


@pytest.fixture
def post(settings: Any) -> Any:
    settings.LOCALNODE_API_KEY = KEY
    client = Client()

    def post(path: str, body: Any, key: str | None = KEY) -> Any:
        raw = body if isinstance(body, str) else json.dumps(body)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return client.post(BASE + path, raw, content_type="application/json", headers=headers)

    return post


def records(*item_ids: str) -> list[dict[str, Any]]:
    return [
        {
            "item_id": i,
            "url": f"https://example.com/p/{i}",
            "fetched_at": "2026-11-22T10:00:00+00:00",
            "http_status": 200,
            "data": {"title": f"Produto {i}"},
            "unknown_field": "ignored",
        }
        for i in item_ids
    ]


def batch(key: str, *item_ids: str, mission_id: int = 42) -> dict[str, Any]:
    return {
        "batch_key": key,
        "mission": {"id": mission_id, "name": "Catálogo", "domain": "example.com", "run_id": "r-5"},
        "records": records(*item_ids),
    }


def test_health_announces_the_batch_limit(settings: Any) -> None:
    settings.LOCALNODE_API_KEY = KEY
    response = Client().get(BASE + "/health", headers={"Authorization": f"Bearer {KEY}"})
    assert response.json() == {"status": "ok", "version": "1.0.0", "max_batch_records": 500}


def test_it_answers_401_without_the_key(post: Any) -> None:
    response = post("/batches", batch("b1", "1"), key=None)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_a_batch_is_stored_once_per_batch_key(post: Any) -> None:
    first = post("/batches", batch("m42-j-77-c0001", "1", "2"))
    again = post("/batches", batch("m42-j-77-c0001", "1", "2"))
    assert first.status_code == 201
    assert first.json() == {
        "batch_id": first.json()["batch_id"],
        "stored": 2,
        "duplicates": 0,
        "duplicate": False,
    }
    assert again.status_code == 200
    assert again.json()["batch_id"] == first.json()["batch_id"]
    assert again.json()["duplicate"] is True
    assert LocalBatch.objects.count() == 1 and LocalRecord.objects.count() == 2
    stored = LocalRecord.objects.get(item_id="1")
    assert stored.data == {"title": "Produto 1"} and stored.http_status == 200
    assert stored.fetched_at is not None


def test_overlapping_batches_store_only_new_records(post: Any) -> None:
    post("/batches", batch("c1", "1", "2"))
    overlap = post("/batches", batch("c2", "2", "3", "3")).json()
    assert overlap["stored"] == 1 and overlap["duplicates"] == 2 and overlap["duplicate"] is False
    # The same item of another mission is a different record.
    other = post("/batches", batch("c3", "1", mission_id=43)).json()
    assert other["stored"] == 1
    assert LocalRecord.objects.filter(mission_id=42).count() == 3


def test_a_batch_over_the_limit_is_413(post: Any) -> None:
    response = post("/batches", batch("big", *[str(i) for i in range(501)]))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "batch_too_large"
    assert not LocalBatch.objects.exists()


def test_invalid_records_are_422_naming_each(post: Any) -> None:
    body = batch("bad", "1", "2", "3")
    body["records"][0]["item_id"] = ""
    body["records"][1]["fetched_at"] = "yesterday"
    body["records"][2]["data"] = ["not", "an", "object"]
    response = post("/batches", body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_records"
    assert set(error["fields"]) == {
        "records[0].item_id",
        "records[1].fetched_at",
        "records[2].data",
    }
    assert not LocalRecord.objects.exists()


def test_a_batch_without_a_mission_is_422_and_bad_json_400(post: Any) -> None:
    response = post("/batches", {"batch_key": "x", "records": []})
    assert response.status_code == 422
    assert "mission.id" in response.json()["error"]["fields"]
    assert post("/batches", "{oops").json()["error"]["code"] == "invalid_json"


def test_complete_is_idempotent_when_counts_match(post: Any) -> None:
    post("/batches", batch("c1", "1", "2"))
    first = post("/missions/42/complete", {"run_id": "r-5", "total_records": 2})
    again = post("/missions/42/complete", {"run_id": "r-5", "total_records": 2})
    assert first.status_code == again.status_code == 200
    assert first.json() == {"mission_id": 42, "stored_records": 2}
    assert LocalCompletion.objects.get(mission_id=42).total_records == 2


def test_complete_with_another_count_is_409_count_mismatch(post: Any) -> None:
    post("/batches", batch("c1", "1", "2"))
    response = post("/missions/42/complete", {"run_id": "r-5", "total_records": 3})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "count_mismatch"
    assert error["stored_records"] == 2 and error["total_records"] == 3
    assert not LocalCompletion.objects.exists()


def test_complete_validates_its_body(post: Any) -> None:
    response = post("/missions/42/complete", {"run_id": "r-5"})
    assert response.status_code == 422
    assert "total_records" in response.json()["error"]["fields"]
    assert post("/missions/abc/complete", {"total_records": 0}).status_code == 422
