"""EtlClient against docs/contracts/etl-api.md: field-name variants, list shapes, batching."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from orchestrator.clients.base import ClientSettings, ServiceError
from orchestrator.clients.etl import (
    EtlClient,
    EtlItemUpdate,
    EtlRunStats,
    build_api_url,
    get_etl_client,
    normalize_run,
    normalize_runs,
)
from registry.config import Config
from tests.unit.test_clients_base import Recorder, error

FAST = ClientSettings(deadline=5, max_attempts=3, backoff_base=0.001)
KEY = "etl-key-SECRET-99"


def client(rec: Recorder) -> EtlClient:
    return EtlClient("https://etl.test/api/", KEY, FAST, transport=httpx.MockTransport(rec))


def run_json(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "r-5",
        "domain": "example.com",
        "status": "running",
        "created_at": "2026-11-22T10:00:00Z",
        "updated_at": "2026-11-22T10:05:00Z",
        "items": [
            {"id": "i-1", "url": "https://example.com/1", "done": True, "status": "done"},
            {"id": "i-2", "url": "https://example.com/2", "done": False, "status": "pending"},
        ],
    }
    data.update(over)
    return data


@pytest.mark.parametrize(
    ("endpoint", "path", "params", "expected"),
    [
        ("https://etl.test/api", "/scrape-runs", None, "https://etl.test/api/scrape-runs"),
        ("https://etl.test/api/", "/scrape-runs", None, "https://etl.test/api/scrape-runs"),
        ("https://etl.test/api/", "scrape-runs", None, "https://etl.test/api/scrape-runs"),
        ("https://etl.test/api", "scrape-runs/", None, "https://etl.test/api/scrape-runs/"),
        (
            "https://etl.test",
            "/scrape-runs/r-1/items",
            None,
            "https://etl.test/scrape-runs/r-1/items",
        ),
        (
            "https://etl.test/api/",
            "/scrape-runs",
            {"domain": "example.com", "status": None, "limit": 1},
            "https://etl.test/api/scrape-runs?domain=example.com&limit=1",
        ),
        (
            "https://etl.test/api",
            "/scrape-runs?x=1",
            {"domain": "a b&c"},
            "https://etl.test/api/scrape-runs?x=1&domain=a+b%26c",
        ),
        (
            "https://etl.test/api",
            "/scrape-runs",
            {"status": None},
            "https://etl.test/api/scrape-runs",
        ),
    ],
)
def test_build_api_url(
    endpoint: str, path: str, params: dict[str, Any] | None, expected: str
) -> None:
    assert build_api_url(endpoint, path, params) == expected


def test_get_etl_client_is_none_without_an_endpoint(settings: SettingsWrapper) -> None:
    settings.ETL_API_ENDPOINT = ""
    assert get_etl_client() is None
    settings.ETL_API_ENDPOINT = "   "
    assert get_etl_client() is None


def test_get_etl_client_uses_the_endpoint_key_and_config(settings: SettingsWrapper) -> None:
    settings.ETL_API_ENDPOINT = "https://etl.test/api"
    settings.ETL_API_KEY = KEY
    rec = Recorder(httpx.Response(200, json=run_json()))
    etl = get_etl_client(Config({"http_deadline_s": 9}), transport=httpx.MockTransport(rec))
    assert etl is not None
    assert etl.settings.deadline == 9
    etl.fetch_scrape_run("r-5")
    assert str(rec.requests[0].url) == "https://etl.test/api/scrape-runs/r-5"
    assert rec.requests[0].headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    "answer",
    [
        run_json(),
        {
            **{k: v for k, v in run_json().items() if k not in ("id", "created_at", "updated_at")},
            "_id": "r-5",
            "createdAt": "2026-11-22T10:00:00Z",
            "updatedAt": "2026-11-22T10:05:00Z",
        },
        {**{k: v for k, v in run_json().items() if k != "id"}, "runId": "r-5"},
        {**{k: v for k, v in run_json().items() if k != "id"}, "run_id": "r-5"},
        {"run": run_json()},
        {"data": run_json(extra="ignored")},
    ],
)
def test_runs_are_normalized_from_every_known_shape(answer: dict[str, Any]) -> None:
    run = normalize_run(answer)
    assert run.id == "r-5"
    assert run.domain == "example.com"
    assert run.status == "running"
    assert run.created_at == dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)
    assert run.updated_at == dt.datetime(2026, 11, 22, 10, 5, tzinfo=dt.UTC)
    assert [(i.id, i.done) for i in run.items] == [("i-1", True), ("i-2", False)]
    assert [i.id for i in run.pending_items()] == ["i-2"]


def test_items_are_normalized_too() -> None:
    run = normalize_run(
        {
            "_id": 7,
            "domain": "x.com",
            "items": [
                {"_id": 1, "url": "https://x.com/1", "status": "completed"},
                {"id": "2", "url": "https://x.com/2"},
            ],
        }
    )
    assert run.id == "7"
    assert run.status == "pending"
    assert run.created_at is None
    first, second = run.items
    assert (first.id, first.done, first.status) == ("1", True, "completed")
    assert (second.id, second.done, second.status) == ("2", False, "pending")


def test_a_run_without_an_id_is_invalid() -> None:
    with pytest.raises(ServiceError) as info:
        normalize_run({"domain": "x.com"})
    assert info.value.code == "invalid_response"
    with pytest.raises(ServiceError):
        normalize_run(["not", "a", "run"])


@pytest.mark.parametrize("wrap", [lambda r: r, lambda r: {"runs": r}, lambda r: {"items": r}])
def test_run_lists_in_every_shape_come_back_newest_first(wrap: Any) -> None:
    runs = [
        run_json(id="old", created_at="2026-11-20T10:00:00Z"),
        {"_id": "new", "domain": "example.com", "createdAt": "2026-11-22T10:00:00Z"},
        run_json(id="mid", created_at="2026-11-21T10:00:00-03:00"),
    ]
    assert [r.id for r in normalize_runs(wrap(runs))] == ["new", "mid", "old"]


def test_create_scrape_run() -> None:
    rec = Recorder(
        httpx.Response(
            201,
            json={
                "_id": "r-9",
                "domain": "example.com",
                "status": "pending",
                "createdAt": "2026-11-22T10:00:00.5+00:00",
            },
        )
    )
    run = client(rec).create_scrape_run("example.com", ["https://example.com/1"])
    assert run.id == "r-9"
    assert run.created_at is not None and run.created_at.tzinfo is not None
    assert str(rec.requests[0].url) == "https://etl.test/api/scrape-runs"
    assert json.loads(rec.requests[0].content) == {
        "domain": "example.com",
        "urls": ["https://example.com/1"],
    }
    rec = Recorder(httpx.Response(201, json={"id": "r-10"}))
    client(rec).create_scrape_run("example.com")
    assert json.loads(rec.requests[0].content) == {"domain": "example.com"}


def test_create_is_not_retried_once_sent_since_it_has_no_idempotency_key() -> None:
    rec = Recorder(error(503, "unavailable"))
    with pytest.raises(ServiceError) as info:
        client(rec).create_scrape_run("example.com")
    assert info.value.transient
    assert rec.calls == 1
    rec = Recorder(httpx.ConnectError("refused"), httpx.Response(201, json={"id": "r-1"}))
    assert client(rec).create_scrape_run("example.com").id == "r-1"
    assert rec.calls == 2


def test_list_scrape_runs_sends_filters_and_keeps_the_domain() -> None:
    rec = Recorder(
        httpx.Response(
            200,
            json={
                "runs": [
                    run_json(id="a", created_at="2026-11-22T10:00:00Z"),
                    run_json(id="other", domain="elsewhere.org", created_at="2026-11-23T00:00:00Z"),
                    run_json(id="b", domain="www.example.com", created_at="2026-11-21T10:00:00Z"),
                ],
                "total": 3,
            },
        )
    )
    runs = client(rec).list_scrape_runs("example.com", status="running", limit=5)
    assert [r.id for r in runs] == ["a", "b"]
    assert rec.requests[0].url.params == httpx.QueryParams(
        {"domain": "example.com", "status": "running", "limit": "5"}
    )


def test_list_without_filters_sends_no_query() -> None:
    rec = Recorder(httpx.Response(200, json=[]))
    assert client(rec).list_scrape_runs() == []
    assert rec.requests[0].url.query == b""


def test_get_latest_run_for_domain() -> None:
    rec = Recorder(
        httpx.Response(
            200,
            json=[
                run_json(id="older", created_at="2026-11-01T00:00:00Z"),
                run_json(id="newest", created_at="2026-11-22T00:00:00Z"),
            ],
        ),
        httpx.Response(200, json={"items": []}),
    )
    etl = client(rec)
    latest = etl.get_latest_run_for_domain("example.com")
    assert latest is not None and latest.id == "newest"
    assert rec.requests[0].url.params["limit"] == "1"
    assert etl.get_latest_run_for_domain("example.com") is None


def test_item_updates_go_in_batches_never_one_per_item() -> None:
    sizes: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)
        sizes.append(len(batch))
        return httpx.Response(200, json={"updated": len(batch)})

    rec = Recorder(answer)
    updates: list[Any] = [{"id": f"i-{n}", "done": True, "status": "done"} for n in range(1000)] + [
        EtlItemUpdate(id=f"j-{n}", done=False, status="failed", error="blocked") for n in range(234)
    ]
    assert client(rec).update_scrape_run_items("r-5", updates) == 1234
    assert rec.calls == 3
    assert sizes == [500, 500, 234]
    assert all(r.method == "PATCH" for r in rec.requests)
    assert str(rec.requests[0].url) == "https://etl.test/api/scrape-runs/r-5/items"
    last = json.loads(rec.requests[2].content)
    assert last[-1] == {"id": "j-233", "done": False, "status": "failed", "error": "blocked"}
    assert last[0] == {"id": "j-0", "done": False, "status": "failed", "error": "blocked"}
    assert json.loads(rec.requests[0].content)[0] == {"id": "i-0", "done": True, "status": "done"}


def test_item_updates_are_retried_and_counted_without_an_answer() -> None:
    rec = Recorder(httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(204))
    updates = [{"id": "i-1", "done": True, "status": "done"}]
    assert client(rec).update_scrape_run_items("r-5", updates, batch_size=500) == 1
    assert rec.calls == 2


def test_no_updates_send_nothing() -> None:
    rec = Recorder(httpx.Response(200, json={"updated": 0}))
    assert client(rec).update_scrape_run_items("r-5", []) == 0
    assert rec.calls == 0


def test_finalize_scrape_run() -> None:
    rec = Recorder(httpx.Response(200, json=run_json(status="completed")))
    run = client(rec).finalize_scrape_run(
        "r-5", EtlRunStats(total=10, done=8, failed=2, duration_s=12.5)
    )
    assert run.status == "completed"
    assert str(rec.requests[0].url) == "https://etl.test/api/scrape-runs/r-5/finalize"
    assert json.loads(rec.requests[0].content) == {
        "total": 10,
        "done": 8,
        "failed": 2,
        "duration_s": 12.5,
    }


@pytest.mark.parametrize("answer", [httpx.Response(204), httpx.Response(200, json={"ok": True})])
def test_finalize_accepts_an_answer_without_the_run(answer: httpx.Response) -> None:
    run = client(Recorder(answer)).finalize_scrape_run(
        "r-5", {"total": 1, "done": 1, "failed": 0, "duration_s": 1}
    )
    assert run.id == "r-5"


def test_etl_errors_are_service_errors_without_the_key() -> None:
    rec = Recorder(error(401, "unauthorized", f"token {KEY} expired"))
    with pytest.raises(ServiceError) as info:
        client(rec).fetch_scrape_run("r-5")
    assert info.value.code == "unauthorized"
    assert not info.value.transient
    assert info.value.infrastructure
    assert KEY not in str(info.value)


def test_every_state_changing_call_carries_its_idempotency_key_and_retries_with_it() -> None:
    """With a key a create is safe to send again: retried on a 503, the same key on
    every attempt; item batches get one key each (`<key>:<n>`)."""
    rec = Recorder(error(503, "unavailable"), httpx.Response(201, json=run_json()))
    client(rec).create_scrape_run("example.com", ["https://example.com/1"], key="k-create")
    assert [r.headers["Idempotency-Key"] for r in rec.requests] == ["k-create", "k-create"]

    rec = Recorder(httpx.Response(200, json={"updated": 1}))
    updates = [EtlItemUpdate(id=f"i-{n}", done=True, status="done") for n in range(3)]
    client(rec).update_scrape_run_items("r-5", updates, batch_size=2, key="k-items")
    assert [r.headers["Idempotency-Key"] for r in rec.requests] == ["k-items:0", "k-items:1"]

    rec = Recorder(httpx.Response(200, json=run_json(status="failed")))
    client(rec).finalize_scrape_run(
        "r-5",
        {"total": 2, "done": 0, "failed": 2, "duration_s": 1.0, "status": "failed"},
        key="k-final",
    )
    assert rec.requests[0].headers["Idempotency-Key"] == "k-final"
    assert json.loads(rec.requests[0].content)["status"] == "failed"
