"""docs/contracts/worker-api.md, checked over HTTP against every ``worker_target``.

The last section checks switches of the fake itself (``fake_worker`` fixture).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.contract.conftest import (
    WorkerApi,
    WorkerTarget,
    assert_error,
    make_client,
    unique,
    wait_until,
)
from tests.fakes.worker import FakeWorker

SESSION_FIELDS = {
    "id",
    "session_key",
    "status",
    "phase",
    "provider",
    "proxy_id",
    "job_id",
    "created_at",
    "last_activity_at",
    "error",
}
JOB_FIELDS = {
    "id",
    "job_key",
    "session_id",
    "status",
    "progress",
    "started_at",
    "finished_at",
    "error",
}
RESULT_FIELDS = {
    "item_id",
    "url",
    "status",
    "http_status",
    "fetched_at",
    "final_url",
    "data",
    "error",
}
SESSION_STATUSES = {"creating", "ready", "busy", "stuck", "disconnected", "failed", "closed"}
JOB_STATUSES = {"queued", "running", "completed", "failed", "cancelled"}
ERROR_CODES = {"timeout", "blocked", "http_error", "proxy_error", "dns_error", "parse_error"}


def _assert_timestamp(value: Any) -> None:
    assert isinstance(value, str)
    assert datetime.fromisoformat(value).utcoffset() is not None, value


def _assert_session_shape(session: dict[str, Any]) -> None:
    assert session.keys() >= SESSION_FIELDS
    assert session["status"] in SESSION_STATUSES
    _assert_timestamp(session["created_at"])
    _assert_timestamp(session["last_activity_at"])


def _assert_job_shape(job: dict[str, Any]) -> None:
    assert job.keys() >= JOB_FIELDS
    assert job["status"] in JOB_STATUSES
    assert {"total", "done", "failed"} <= job["progress"].keys()
    _assert_timestamp(job["started_at"])


def _run_job(api: WorkerApi, urls: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    session = api.ready_session()
    response, _ = api.create_job(session["id"], urls)
    assert response.status_code == 202, response.text
    return session, api.wait_job_finished(response.json()["id"])


def _start_slow_job(api: WorkerApi, n_fast: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A running job: ``n_fast`` quick items, then one slow item holding it open."""
    t = api.target
    session = api.ready_session()
    response, _ = api.create_job(
        session["id"], [t.url_ok(n) for n in range(n_fast)] + [t.url_slow(0)]
    )
    assert response.status_code == 202, response.text
    return session, response.json()


def _results_when(api: WorkerApi, job_id: str, count: int) -> dict[str, Any]:
    """The first page once at least ``count`` results exist (polled with a deadline)."""

    def probe() -> dict[str, Any] | None:
        page = api.results_page(job_id)
        return page if len(page["results"]) >= count else None

    return wait_until(probe)


# ---------------------------------------------------------------------- general
def test_health_reports_status_version_providers_and_capacity(worker_api: WorkerApi) -> None:
    response = worker_api.client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] in ("ok", "degraded")
    assert isinstance(body["version"], str)
    assert isinstance(body["providers"], list)
    assert "local" in body["providers"]
    capacity = body["capacity"]
    assert isinstance(capacity["max_sessions"], int)
    assert isinstance(capacity["active_sessions"], int)
    assert response.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/health"), ("POST", "/sessions"), ("GET", "/sessions"), ("GET", "/jobs/j-x")],
)
@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_it_answers_401_without_the_right_bearer_key(
    worker_target: WorkerTarget, method: str, path: str, key: str | None
) -> None:
    if not worker_target.api_key:
        pytest.skip("target has no key")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with make_client(worker_target.base_url, None) as client:
        response = client.request(
            method, path, headers=headers, json={"session_key": unique("ct-s")}
        )
    assert_error(response, 401, response.json()["error"]["code"])
    if worker_target.fake is not None:
        assert not worker_target.fake.sessions


def test_it_answers_400_invalid_json_to_a_body_that_is_not_json(worker_api: WorkerApi) -> None:
    response = worker_api.client.post(
        "/sessions", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")


def test_unknown_request_fields_are_ignored(worker_api: WorkerApi) -> None:
    t = worker_api.target
    response = worker_api.create_session(future_field={"x": 1}, labels={"mission_id": "42"})
    assert response.status_code == 201, response.text
    session = response.json()
    if session["status"] != "ready":
        session = worker_api.wait_session_status(session["id"], {"ready"})
    job, _ = worker_api.create_job(
        session["id"],
        [],
        items=[{"item_id": "a", "url": t.url_ok(1), "priority": 9}],
        options={"timeout_s": 60, "wait_until": "load", "new_option": True},
        trace_id="abc",
    )
    assert job.status_code == 202, job.text


# --------------------------------------------------------------------- sessions
def test_creating_a_session_is_idempotent_on_its_key(worker_api: WorkerApi) -> None:
    key = unique("ct-s")
    first = worker_api.create_session(session_key=key)
    second = worker_api.create_session(session_key=key)
    assert first.status_code == 201, first.text
    assert second.status_code == 200, second.text
    assert first.json()["id"] == second.json()["id"]
    assert second.json()["session_key"] == key
    listed = worker_api.client.get("/sessions").json()["sessions"]
    assert [s["id"] for s in listed if s["session_key"] == key] == [first.json()["id"]]
    fake = worker_api.target.fake
    if fake is not None:
        assert len(fake.sessions) == 1
        assert fake.duplicate_session_requests == 1


def test_a_new_session_has_the_contract_shape_and_defaults(worker_api: WorkerApi) -> None:
    response = worker_api.create_session()
    assert response.status_code == 201
    session = response.json()
    _assert_session_shape(session)
    assert session["provider"] == "local"
    assert session["proxy_id"] is None
    assert session["job_id"] is None
    assert session["error"] is None
    assert session["status"] in ("creating", "ready")


def test_a_session_reports_the_id_of_its_proxy(worker_api: WorkerApi) -> None:
    proxy = {
        "id": "px-17",
        "type": "residential",
        "url": "http://user:pass@203.0.113.7:8000",
        "country": "BR",
    }
    response = worker_api.create_session(
        proxy=proxy, engine="http", timeout_s=900, labels={"mission_id": "42"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["proxy_id"] == "px-17"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"session_key": ""},
        {"session_key": "has space"},
        {"session_key": "x" * 129},
        {"session_key": "acentuação"},
        {"session_key": 42},
    ],
    ids=["missing", "empty", "space", "too-long", "non-ascii", "not-a-string"],
)
def test_it_rejects_a_bad_session_key_with_422(worker_api: WorkerApi, body: dict[str, Any]) -> None:
    response = worker_api.client.post("/sessions", json=body)
    error = assert_error(response, 422, "invalid_request")
    assert "session_key" in error["fields"]


def test_a_session_key_of_128_allowed_characters_is_accepted(worker_api: WorkerApi) -> None:
    key = ("Az09._:-" * 16)[:116] + uuid_tail()
    assert len(key) == 128
    assert worker_api.create_session(session_key=key).status_code == 201


def uuid_tail() -> str:
    return unique("")[1:]  # 12 hex characters


def test_it_answers_409_capacity_exhausted_when_no_slot_is_free(worker_api: WorkerApi) -> None:
    capacity = worker_api.client.get("/health").json()["capacity"]
    free = capacity["max_sessions"] - capacity["active_sessions"]
    for _ in range(free):
        assert worker_api.create_session().status_code == 201
    assert (
        worker_api.client.get("/health").json()["capacity"]["active_sessions"]
        == (capacity["max_sessions"])
    )
    response = worker_api.create_session()
    assert_error(response, 409, "capacity_exhausted")
    # Closing one frees its slot.
    assert worker_api.client.delete(f"/sessions/{worker_api.opened[0]}").status_code == 204
    assert worker_api.create_session().status_code == 201


def test_a_known_key_is_answered_200_even_when_capacity_is_exhausted(
    worker_api: WorkerApi,
) -> None:
    capacity = worker_api.client.get("/health").json()["capacity"]
    key = unique("ct-s")
    first = worker_api.create_session(session_key=key)
    for _ in range(capacity["max_sessions"] - capacity["active_sessions"] - 1):
        worker_api.create_session()
    again = worker_api.create_session(session_key=key)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


def test_get_sessions_lists_every_held_session(worker_api: WorkerApi) -> None:
    a = worker_api.create_session().json()
    b = worker_api.create_session().json()
    response = worker_api.client.get("/sessions")
    assert response.status_code == 200
    sessions = {s["id"]: s for s in response.json()["sessions"]}
    assert {a["id"], b["id"]} <= sessions.keys()
    for session in sessions.values():
        _assert_session_shape(session)


def test_get_session_by_id_and_404_for_an_unknown_one(worker_api: WorkerApi) -> None:
    created = worker_api.create_session().json()
    response = worker_api.client.get(f"/sessions/{created['id']}")
    assert response.status_code == 200
    assert response.json()["id"] == created["id"]
    assert response.json()["session_key"] == created["session_key"]
    assert_error(worker_api.client.get("/sessions/no-such-session"), 404, "session_not_found")


def test_delete_closes_a_session_and_is_idempotent(worker_api: WorkerApi) -> None:
    session_id = worker_api.create_session().json()["id"]
    first = worker_api.client.delete(f"/sessions/{session_id}")
    assert first.status_code == 204
    assert first.content == b""
    assert worker_api.client.delete(f"/sessions/{session_id}").status_code == 204
    assert worker_api.client.delete("/sessions/no-such-session").status_code == 204
    # Closed sessions stay listed for 10 minutes, as closed.
    listed = {s["id"]: s for s in worker_api.client.get("/sessions").json()["sessions"]}
    assert listed[session_id]["status"] == "closed"
    assert worker_api.client.get(f"/sessions/{session_id}").json()["status"] == "closed"


def test_creating_the_same_key_after_close_returns_the_closed_session(
    worker_api: WorkerApi,
) -> None:
    key = unique("ct-s")
    session_id = worker_api.create_session(session_key=key).json()["id"]
    worker_api.client.delete(f"/sessions/{session_id}")
    again = worker_api.create_session(session_key=key)
    assert again.status_code == 200
    assert again.json()["id"] == session_id


# ------------------------------------------------------------------------- jobs
def test_creating_a_job_is_idempotent_on_its_key(worker_api: WorkerApi) -> None:
    t = worker_api.target
    session = worker_api.ready_session()
    key = unique("ct-j")
    first, _ = worker_api.create_job(session["id"], [t.url_ok(1)], job_key=key)
    second, _ = worker_api.create_job(session["id"], [t.url_ok(1)], job_key=key)
    assert first.status_code == 202, first.text
    assert second.status_code == 200, second.text
    assert first.json()["id"] == second.json()["id"]
    _assert_job_shape(first.json())
    assert first.json()["session_id"] == session["id"]
    assert first.json()["job_key"] == key
    assert first.json()["progress"]["total"] == 1
    if t.fake is not None:
        assert len(t.fake.jobs) == 1
        assert t.fake.duplicate_job_requests == 1


def test_a_job_key_is_answered_200_while_its_job_keeps_the_session_busy(
    worker_api: WorkerApi,
) -> None:
    session, job = _start_slow_job(worker_api, 0)
    again, _ = worker_api.create_job(
        session["id"], [worker_api.target.url_slow(0)], job_key=job["job_key"]
    )
    assert again.status_code == 200, again.text
    assert again.json()["id"] == job["id"]


def test_a_running_job_makes_its_session_busy_then_ready(worker_api: WorkerApi) -> None:
    session, job = _start_slow_job(worker_api, 1)
    busy = worker_api.client.get(f"/sessions/{session['id']}").json()
    assert busy["status"] == "busy"
    assert busy["job_id"] == job["id"]
    t = worker_api.target
    if t.release_slow is not None:
        t.release_slow(job["id"])
    finished = worker_api.wait_job_finished(job["id"], t.slow_deadline_s)
    assert finished["status"] == "completed"
    ready = worker_api.client.get(f"/sessions/{session['id']}").json()
    assert ready["status"] == "ready"
    assert ready["job_id"] is None


def test_it_answers_409_session_busy_while_a_job_runs(worker_api: WorkerApi) -> None:
    session, _ = _start_slow_job(worker_api, 0)
    response, _ = worker_api.create_job(session["id"], [worker_api.target.url_ok(1)])
    assert_error(response, 409, "session_busy")


def test_it_answers_409_session_not_ready_on_a_closed_session(worker_api: WorkerApi) -> None:
    session = worker_api.ready_session()
    worker_api.client.delete(f"/sessions/{session['id']}")
    response, _ = worker_api.create_job(session["id"], [worker_api.target.url_ok(1)])
    assert_error(response, 409, "session_not_ready")


# Only a target that can hold a session in `creating` can show this (the localnode opens
# its sessions at once): the test runs there rather than skipping on the others.
@pytest.mark.parametrize("worker_target", ["fake"], indirect=True)
def test_it_answers_409_session_not_ready_while_the_session_is_creating(
    worker_api: WorkerApi,
) -> None:
    t = worker_api.target
    assert t.hold_creating is not None, f"{t.name} cannot hold a session in creating"
    with t.hold_creating():
        session = worker_api.create_session().json()
        assert session["status"] == "creating"
        response, _ = worker_api.create_job(session["id"], [t.url_ok(1)])
    assert_error(response, 409, "session_not_ready")


def test_it_answers_404_for_a_job_on_an_unknown_session(worker_api: WorkerApi) -> None:
    response, _ = worker_api.create_job("no-such-session", [worker_api.target.url_ok(1)])
    assert_error(response, 404, "session_not_found")


def _items(n: int, url: str = "https://shop.example/p/") -> list[dict[str, str]]:
    return [{"item_id": str(i), "url": f"{url}{i}"} for i in range(n)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"items": _items(1)}, "job_key"),
        ({"job_key": "bad key", "items": _items(1)}, "job_key"),
        ({"job_key": "k" * 129, "items": _items(1)}, "job_key"),
        ({}, "items"),
        ({"items": []}, "items"),
        ({"items": _items(1001)}, "items"),
        ({"items": "https://shop.example/p/1"}, "items"),
        ({"items": [{"url": "https://shop.example/p/1"}]}, "items[0].item_id"),
        ({"items": [{"item_id": "", "url": "https://shop.example/"}]}, "items[0].item_id"),
        ({"items": [{"item_id": "x" * 65, "url": "https://shop.example/"}]}, "items[0].item_id"),
        ({"items": [{"item_id": 7, "url": "https://shop.example/"}]}, "items[0].item_id"),
        (
            {
                "items": [
                    {"item_id": "a", "url": "https://shop.example/1"},
                    {"item_id": "a", "url": "https://shop.example/2"},
                ]
            },
            "items[1].item_id",
        ),
        ({"items": [{"item_id": "a"}]}, "items[0].url"),
        ({"items": [{"item_id": "a", "url": "/p/1"}]}, "items[0].url"),
        ({"items": [{"item_id": "a", "url": "ftp://shop.example/p/1"}]}, "items[0].url"),
        ({"items": [{"item_id": "a", "url": "shop.example/p/1"}]}, "items[0].url"),
    ],
    ids=[
        "no-job-key",
        "job-key-space",
        "job-key-too-long",
        "no-items",
        "empty-items",
        "1001-items",
        "items-not-a-list",
        "no-item-id",
        "empty-item-id",
        "item-id-too-long",
        "item-id-not-a-string",
        "duplicate-item-id",
        "no-url",
        "relative-url",
        "ftp-url",
        "url-without-scheme",
    ],
)
def test_it_rejects_a_bad_job_with_422_naming_the_field(
    worker_api: WorkerApi, body: dict[str, Any], field: str
) -> None:
    session = worker_api.ready_session()
    if "job_key" not in body and field != "job_key":
        body = {**body, "job_key": unique("ct-j")}
    response = worker_api.client.post(f"/sessions/{session['id']}/jobs", json=body)
    error = assert_error(response, 422, "invalid_request")
    # The field is named as the contract's path; a target may also name the parent.
    named = error["fields"].keys()
    assert field in named or field.split("[")[0] in named or field.split(".")[0] in named, named


def test_a_job_of_1000_items_with_64_character_ids_is_accepted(worker_api: WorkerApi) -> None:
    session = worker_api.ready_session()
    items = [{"item_id": f"{i:064d}", "url": worker_api.target.url_ok(i)} for i in range(1000)]
    response, _ = worker_api.create_job(session["id"], [], items=items)
    assert response.status_code == 202, response.text
    assert response.json()["progress"]["total"] == 1000


def test_get_job_and_404_for_an_unknown_one(worker_api: WorkerApi) -> None:
    _, finished = _run_job(worker_api, [worker_api.target.url_ok(1)])
    response = worker_api.client.get(f"/jobs/{finished['id']}")
    assert response.status_code == 200
    _assert_job_shape(response.json())
    assert_error(worker_api.client.get("/jobs/no-such-job"), 404, "job_not_found")
    assert_error(worker_api.client.get("/jobs/no-such-job/results"), 404, "job_not_found")


def test_a_finished_job_reports_its_progress_and_finish_time(worker_api: WorkerApi) -> None:
    t = worker_api.target
    _, job = _run_job(worker_api, [t.url_ok(1), t.url_ok(2), t.url_404(3)])
    assert job["status"] == "completed"
    _assert_timestamp(job["finished_at"])
    progress = job["progress"]
    assert progress["total"] == 3
    assert progress["failed"] == 1
    # "done" counts either the successful items or every finished one.
    assert progress["done"] in (2, 3)


def test_results_carry_data_for_ok_items_and_a_code_for_failed_ones(
    worker_api: WorkerApi,
) -> None:
    t = worker_api.target
    urls = [t.url_ok(1), t.url_404(2), t.url_blocked(3)]
    _, job = _run_job(worker_api, urls)
    results, _ = worker_api.walk_results(job["id"], limit=100)
    by_url = {r["url"]: r for r in results}
    assert set(by_url) == set(urls)
    for result in results:
        assert result.keys() >= RESULT_FIELDS
        _assert_timestamp(result["fetched_at"])
    ok = by_url[t.url_ok(1)]
    assert ok["status"] == "ok"
    assert ok["error"] is None
    assert ok["http_status"] == 200
    assert isinstance(ok["data"], dict)
    missing = by_url[t.url_404(2)]
    assert missing["status"] == "error"
    assert missing["error"]["code"] == "http_error"
    assert missing["http_status"] == 404
    blocked = by_url[t.url_blocked(3)]
    assert blocked["status"] == "error"
    assert blocked["error"]["code"] == "blocked"
    assert {r["error"]["code"] for r in results if r["error"]} <= ERROR_CODES
    assert {r["item_id"] for r in results} == {"i0", "i1", "i2"}


def test_deleting_a_session_cancels_its_running_job(worker_api: WorkerApi) -> None:
    session, job = _start_slow_job(worker_api, 0)
    assert worker_api.client.delete(f"/sessions/{session['id']}").status_code == 204
    finished = worker_api.wait_job_finished(job["id"])
    assert finished["status"] == "cancelled"


# ---------------------------------------------------------------------- paging
def test_a_full_walk_collects_every_item_exactly_once(worker_api: WorkerApi) -> None:
    t = worker_api.target
    _, job = _run_job(worker_api, [t.url_ok(n) for n in range(25)])
    results, pages = worker_api.walk_results(job["id"], limit=7)
    ids = [r["item_id"] for r in results]
    assert sorted(ids) == sorted(f"i{n}" for n in range(25))
    assert len(ids) == len(set(ids))
    assert [len(p["results"]) for p in pages] == [7, 7, 7, 4]
    assert all(p["next_cursor"] for p in pages[:-1])
    assert pages[-1]["next_cursor"] is None
    assert {p["job_status"] for p in pages} == {"completed"}


def test_without_a_limit_a_small_job_fits_one_page(worker_api: WorkerApi) -> None:
    t = worker_api.target
    _, job = _run_job(worker_api, [t.url_ok(n) for n in range(5)])
    page = worker_api.results_page(job["id"])
    assert len(page["results"]) == 5
    assert page["next_cursor"] is None


def test_re_reading_a_cursor_returns_the_same_results(worker_api: WorkerApi) -> None:
    t = worker_api.target
    _, job = _run_job(worker_api, [t.url_ok(n) for n in range(10)])
    first = worker_api.results_page(job["id"], limit=4)
    cursor = first["next_cursor"]
    second = worker_api.results_page(job["id"], cursor, limit=4)
    again = worker_api.results_page(job["id"], cursor, limit=4)
    assert again == second
    assert worker_api.results_page(job["id"], limit=4) == first


def test_a_page_ending_exactly_at_the_end_of_a_finished_job_has_a_null_cursor(
    worker_api: WorkerApi,
) -> None:
    t = worker_api.target
    _, job = _run_job(worker_api, [t.url_ok(n) for n in range(4)])
    first = worker_api.results_page(job["id"], limit=2)
    last = worker_api.results_page(job["id"], first["next_cursor"], limit=2)
    assert len(last["results"]) == 2
    assert last["next_cursor"] is None


def test_a_running_job_pages_with_an_empty_page_keeping_the_cursor(
    worker_api: WorkerApi,
) -> None:
    t = worker_api.target
    _, job = _start_slow_job(worker_api, 2)
    first = _results_when(worker_api, job["id"], 2)
    assert [r["item_id"] for r in first["results"]] == ["i0", "i1"]
    assert first["job_status"] == "running"
    cursor = first["next_cursor"]
    assert cursor is not None
    empty = worker_api.results_page(job["id"], cursor)
    assert empty["results"] == []
    assert empty["next_cursor"] == cursor
    assert empty["job_status"] == "running"
    # Paging from the start again: the same results in the same order.
    assert worker_api.results_page(job["id"])["results"] == first["results"]
    # The slow item finishes: the same cursor now yields it, and the end is reached.
    if t.release_slow is not None:
        t.release_slow(job["id"])
    worker_api.wait_job_finished(job["id"], t.slow_deadline_s)
    tail = worker_api.results_page(job["id"], cursor)
    assert [r["item_id"] for r in tail["results"]] == ["i2"]
    assert tail["next_cursor"] is None
    assert tail["job_status"] == "completed"
    assert worker_api.results_page(job["id"])["results"][:2] == first["results"]


def test_a_cancelled_job_ends_its_paging_with_a_null_cursor(worker_api: WorkerApi) -> None:
    session, job = _start_slow_job(worker_api, 1)
    first = _results_when(worker_api, job["id"], 1)
    worker_api.client.delete(f"/sessions/{session['id']}")
    worker_api.wait_job_finished(job["id"])
    end = worker_api.results_page(job["id"], first["next_cursor"])
    assert end["results"] == []
    assert end["next_cursor"] is None
    assert end["job_status"] == "cancelled"


def test_the_first_page_of_a_job_without_results_is_empty_with_a_cursor(
    worker_api: WorkerApi,
) -> None:
    _, job = _start_slow_job(worker_api, 0)
    page = worker_api.results_page(job["id"])
    assert page["results"] == []
    assert page["next_cursor"] is not None
    assert page["job_status"] in ("queued", "running")


def test_results_stay_readable_after_the_session_is_closed(worker_api: WorkerApi) -> None:
    t = worker_api.target
    session, job = _run_job(worker_api, [t.url_ok(1), t.url_ok(2)])
    worker_api.client.delete(f"/sessions/{session['id']}")
    results, _ = worker_api.walk_results(job["id"], limit=10)
    assert len(results) == 2


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "many"])
def test_it_rejects_a_limit_outside_1_to_1000(worker_api: WorkerApi, limit: str) -> None:
    _, job = _run_job(worker_api, [worker_api.target.url_ok(1)])
    response = worker_api.client.get(f"/jobs/{job['id']}/results", params={"limit": limit})
    error = assert_error(response, 422, "invalid_request")
    assert "limit" in error["fields"]


@pytest.mark.parametrize("limit", [1, 1000])
def test_it_accepts_the_limit_bounds(worker_api: WorkerApi, limit: int) -> None:
    _, job = _run_job(worker_api, [worker_api.target.url_ok(1), worker_api.target.url_ok(2)])
    page = worker_api.results_page(job["id"], limit=limit)
    assert len(page["results"]) == min(limit, 2)


# ----------------------------------------------------------- the fake's switches
def _client(fake: FakeWorker) -> httpx.Client:
    return make_client(fake.base_url, fake.api_key)


def _open(client: httpx.Client, **body: Any) -> httpx.Response:
    body.setdefault("session_key", unique("s"))
    return client.post("/sessions", json=body)


def _job(client: httpx.Client, session_id: str, urls: list[str]) -> dict[str, Any]:
    items = [{"item_id": str(n), "url": u} for n, u in enumerate(urls)]
    response = client.post(
        f"/sessions/{session_id}/jobs", json={"job_key": unique("j"), "items": items}
    )
    assert response.status_code == 202, response.text
    return response.json()


def _results(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    return client.get(f"/jobs/{job_id}/results").json()["results"]


def test_fake_provider_error_for_a_proxy_answers_502(fake_worker: FakeWorker) -> None:
    fake_worker.provider_error_for_proxies = {"px-bad"}
    with _client(fake_worker) as client:
        assert_error(_open(client, proxy={"id": "px-bad"}), 502, "provider_error")
        assert _open(client, proxy={"id": "px-good"}).status_code == 201
    assert fake_worker.session_keys_seen and len(fake_worker.sessions) == 1


def test_fake_blocked_proxies_and_fail_items_shape_results(fake_worker: FakeWorker) -> None:
    fake_worker.blocked_proxies = {"px-1"}
    fake_worker.fail_items = {"https://a.example/2": "timeout"}
    with _client(fake_worker) as client:
        blocked = _open(client, proxy={"id": "px-1"}).json()
        clean = _open(client, proxy={"id": "px-2"}).json()
        job_b = _job(client, blocked["id"], ["https://a.example/1"])
        job_c = _job(client, clean["id"], ["https://a.example/1", "https://a.example/2"])
        assert [r["error"]["code"] for r in _results(client, job_b["id"])] == ["blocked"]
        codes = [r["error"] and r["error"]["code"] for r in _results(client, job_c["id"])]
        assert codes == [None, "timeout"]


@pytest.mark.parametrize(
    ("path", "code", "http_status"),
    [
        ("/status/404", "http_error", 404),
        ("/status/410", "http_error", 410),
        ("/status/500", "http_error", 500),
        ("/status/429", "blocked", 429),
        ("/status/403", "blocked", 403),
        ("/captcha", "blocked", 403),
        ("/timeout", "timeout", None),
        ("/proxy-error", "proxy_error", None),
        ("/dns-error", "dns_error", None),
        ("/parse-error", "parse_error", None),
    ],
)
def test_fake_url_rules(
    fake_worker: FakeWorker, path: str, code: str, http_status: int | None
) -> None:
    with _client(fake_worker) as client:
        session = _open(client).json()
        job = _job(client, session["id"], [f"https://a.example{path}/1"])
        (result,) = _results(client, job["id"])
    assert result["status"] == "error"
    assert result["error"]["code"] == code
    assert result["http_status"] == http_status


def test_fake_item_latency_spaces_results_and_pause_holds_them(
    make_fake_worker: Callable[..., FakeWorker],
) -> None:
    now = [1000.0]
    fake = make_fake_worker(item_latency=1.0, clock=lambda: now[0])
    with _client(fake) as client:
        session = _open(client).json()
        job = _job(client, session["id"], [f"https://a.example/{n}" for n in range(3)])
        assert _results(client, job["id"]) == []
        now[0] += 1.0
        assert len(_results(client, job["id"])) == 1
        fake.jobs_paused = True
        now[0] += 5.0
        assert len(_results(client, job["id"])) == 1
        fake.jobs_paused = False
        assert len(_results(client, job["id"])) == 3
        assert client.get(f"/jobs/{job['id']}").json()["status"] == "completed"


def test_fake_ready_delay_keeps_sessions_creating(
    make_fake_worker: Callable[..., FakeWorker],
) -> None:
    now = [1000.0]
    fake = make_fake_worker(ready_delay=2.0, clock=lambda: now[0])
    with _client(fake) as client:
        session = _open(client).json()
        assert session["status"] == "creating"
        now[0] += 2.0
        assert client.get(f"/sessions/{session['id']}").json()["status"] == "ready"


def test_fake_stuck_failed_and_dropped_sessions(fake_worker: FakeWorker) -> None:
    with _client(fake_worker) as client:
        stuck = _open(client).json()
        failed = _open(client).json()
        dropped = _open(client).json()
        job = _job(client, stuck["id"], ["https://a.example/1"])
        fake_worker.stick_session(stuck["id"])
        frozen = fake_worker.session_json(stuck["id"])["last_activity_at"]
        fake_worker.fail_session(failed["id"], "proxy_connect_failed")
        fake_worker.drop_session(dropped["id"])
        listed = {s["id"]: s for s in client.get("/sessions").json()["sessions"]}
        assert set(listed) == {stuck["id"], failed["id"]}
        assert listed[stuck["id"]]["status"] == "stuck"
        assert listed[stuck["id"]]["last_activity_at"] == frozen
        assert client.get(f"/jobs/{job['id']}").json()["status"] == "running"
        assert listed[failed["id"]]["status"] == "failed"
        assert listed[failed["id"]]["error"]["code"] == "proxy_connect_failed"
        assert_error(client.get(f"/sessions/{dropped['id']}"), 404, "session_not_found")
        capacity = client.get("/health").json()["capacity"]
        assert capacity["active_sessions"] == 1


def test_fake_faults_burst_garbage_hang_and_down(fake_worker: FakeWorker) -> None:
    with _client(fake_worker) as client:
        fake_worker.fail_next_requests(2, status=503)
        assert client.get("/health").status_code == 503
        assert_error(client.post("/sessions", json={"session_key": "k"}), 503, "unavailable")
        assert not fake_worker.sessions
        fake_worker.garbage_next(1)
        garbage = client.get("/health")
        assert garbage.status_code == 200
        with pytest.raises(ValueError):
            garbage.json()
        fake_worker.hang_next(1, 5.0)
        with pytest.raises(httpx.ReadTimeout):
            client.get("/health", timeout=0.2)
        fake_worker.down()
        with pytest.raises(httpx.ConnectError):
            client.get("/health")
        fake_worker.up()
        assert client.get("/health").status_code == 200
    assert fake_worker.faults_served == {"503": 2, "garbage": 1, "hang": 1}


def test_fake_hung_request_is_still_processed_afterwards(fake_worker: FakeWorker) -> None:
    fake_worker.hang_next(1, 0.3)
    with _client(fake_worker) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post("/sessions", json={"session_key": "late"}, timeout=0.2)
        wait_until(lambda: fake_worker.session_by_key("late"))
        assert _open(client, session_key="late").status_code == 200
    assert fake_worker.session_keys_seen == ["late", "late"]
    assert fake_worker.duplicate_session_requests == 1
