"""WorkerClient against docs/contracts/worker-api.md, on httpx.MockTransport."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest

from orchestrator.clients.base import ClientSettings, ServiceError
from orchestrator.clients.worker import ProxySpec, WorkerClient
from registry.config import Config
from registry.models import Worker
from tests.unit.test_clients_base import Recorder, error

KEY = "worker-key-SECRET-42"
FAST = ClientSettings(deadline=5, max_attempts=3, backoff_base=0.001)
PROXY = ProxySpec(
    id="px-17", type="residential", url="http://user:pa55-w0rd@203.0.113.7:8000", country="BR"
)


def session_json(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "s-9f2c",
        "session_key": "m42-s3",
        "status": "ready",
        "phase": "idle",
        "provider": "local",
        "proxy_id": "px-17",
        "job_id": None,
        "created_at": "2026-11-22T10:00:00Z",
        "last_activity_at": "2026-11-22T07:01:00-03:00",
        "error": None,
        "future_field": {"ignored": True},
    }
    data.update(over)
    return data


def job_json(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "j-77",
        "job_key": "m42-s3-j7",
        "session_id": "s-9f2c",
        "status": "running",
        "progress": {"total": 50, "done": 12, "failed": 1, "skipped": 0},
        "started_at": "2026-11-22T10:00:05+00:00",
        "finished_at": None,
        "error": None,
        "eta_s": 40,
    }
    data.update(over)
    return data


def client(rec: Recorder, settings: ClientSettings = FAST) -> WorkerClient:
    return WorkerClient(
        "http://w1.test:8100/api/v1/", KEY, settings, transport=httpx.MockTransport(rec)
    )


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def test_health_reads_capacity_and_ignores_unknown_fields() -> None:
    rec = Recorder(
        httpx.Response(
            200,
            json={
                "status": "degraded",
                "version": "1.4.0",
                "providers": ["local", "browserbase"],
                "capacity": {"max_sessions": 8, "active_sessions": 3, "queued": 1},
                "uptime_s": 99,
            },
        )
    )
    health = client(rec).health()
    assert health.status == "degraded"
    assert health.version == "1.4.0"
    assert health.providers == ["local", "browserbase"]
    assert (health.max_sessions, health.active_sessions) == (8, 3)
    assert str(rec.requests[0].url) == "http://w1.test:8100/api/v1/health"
    assert rec.requests[0].headers["Authorization"] == f"Bearer {KEY}"


def test_health_tolerates_a_minimal_answer() -> None:
    health = client(Recorder(httpx.Response(200, json={"status": "ok"}))).health()
    assert health.providers == []
    assert health.max_sessions is None


def test_open_session_sends_the_contract_payload_and_reports_creation() -> None:
    rec = Recorder(httpx.Response(201, json=session_json()))
    session, created = client(rec).open_session(
        "m42-s3", provider="browserbase", proxy=PROXY, engine="browser", labels={"mission_id": "42"}
    )
    assert created is True
    assert session.id == "s-9f2c"
    assert session.status == "ready"
    assert session.created_at == dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)
    assert session.last_activity_at == dt.datetime(2026, 11, 22, 10, 1, tzinfo=dt.UTC)
    assert session.last_activity_at is not None and session.last_activity_at.tzinfo is not None
    request = rec.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "http://w1.test:8100/api/v1/sessions"
    assert body(request) == {
        "session_key": "m42-s3",
        "provider": "browserbase",
        "proxy": {
            "id": "px-17",
            "type": "residential",
            "url": "http://user:pa55-w0rd@203.0.113.7:8000",
            "country": "BR",
        },
        "engine": "browser",
        "timeout_s": 900,
        "labels": {"mission_id": "42"},
    }


def test_open_session_defaults_to_a_direct_local_http_session() -> None:
    rec = Recorder(httpx.Response(200, json=session_json()))
    _, created = client(rec).open_session("m42-s3")
    assert created is False
    assert body(rec.requests[0]) == {
        "session_key": "m42-s3",
        "provider": "local",
        "proxy": None,
        "engine": "http",
        "timeout_s": 900,
        "labels": {},
    }


def test_open_session_is_retried_with_the_same_idempotency_key() -> None:
    rec = Recorder(
        error(503, "unavailable"),
        httpx.ReadTimeout("slow"),
        httpx.Response(200, json=session_json()),
    )
    session, created = client(rec).open_session("m42-s3", proxy=PROXY)
    assert rec.calls == 3
    assert {body(r)["session_key"] for r in rec.requests} == {"m42-s3"}
    assert not created
    assert session.session_key == "m42-s3"


def test_capacity_exhausted_is_a_conflict_not_retried() -> None:
    rec = Recorder(error(409, "capacity_exhausted", "no free slot"))
    with pytest.raises(ServiceError) as info:
        client(rec).open_session("m42-s3")
    assert info.value.code == "capacity_exhausted"
    assert info.value.conflict
    assert not info.value.transient
    assert not info.value.infrastructure
    assert rec.calls == 1


def test_provider_error_fails_the_session_not_the_worker_and_hides_the_proxy() -> None:
    rec = Recorder(
        error(
            502,
            "provider_error",
            "could not start browser via http://user:pa55-w0rd@203.0.113.7:8000 (pa55-w0rd)",
        )
    )
    with pytest.raises(ServiceError) as info:
        client(rec).open_session("m42-s3", proxy=PROXY)
    err = info.value
    assert err.code == "provider_error"
    assert err.status == 502
    assert not err.transient
    assert not err.infrastructure
    assert rec.calls == 1
    assert "pa55-w0rd" not in str(err)
    assert "pa55-w0rd" not in repr(PROXY)


def test_list_sessions_parses_every_session_and_its_error() -> None:
    failed = session_json(
        id="s-2",
        status="failed",
        phase="",
        job_id="j-1",
        last_activity_at=None,
        error={"code": "proxy_connect_failed", "message": "refused"},
    )
    minimal = {"id": "s-3", "status": "creating"}
    rec = Recorder(httpx.Response(200, json={"sessions": [session_json(), failed, minimal]}))
    sessions = client(rec).list_sessions()
    assert [s.id for s in sessions] == ["s-9f2c", "s-2", "s-3"]
    assert sessions[1].error_code == "proxy_connect_failed"
    assert sessions[1].error_message == "refused"
    assert sessions[1].job_id == "j-1"
    assert sessions[1].last_activity_at is None
    assert sessions[2].created_at is None
    assert sessions[2].proxy_id is None


def test_a_session_without_id_is_an_invalid_response() -> None:
    rec = Recorder(httpx.Response(200, json={"sessions": [{"status": "ready"}]}))
    with pytest.raises(ServiceError) as info:
        client(rec).list_sessions()
    assert info.value.code == "invalid_response"


def test_a_sessions_answer_of_the_wrong_shape_is_an_invalid_response() -> None:
    rec = Recorder(httpx.Response(200, json={"sessions": "nope"}))
    with pytest.raises(ServiceError) as info:
        client(rec).list_sessions()
    assert info.value.code == "invalid_response"


def test_get_session_maps_404() -> None:
    rec = Recorder(error(404, "session_not_found", "no such session"))
    with pytest.raises(ServiceError) as info:
        client(rec).get_session("s-x")
    assert info.value.code == "session_not_found"
    assert not info.value.transient
    assert rec.calls == 1


def test_ids_are_one_path_segment() -> None:
    rec = Recorder(httpx.Response(200, json=session_json(id="a/../b")))
    client(rec).get_session("a/../b")
    assert rec.requests[0].url.raw_path == b"/api/v1/sessions/a%2F..%2Fb"


@pytest.mark.parametrize("answer", [httpx.Response(204), error(404, "session_not_found")])
def test_close_session_accepts_closed_and_unknown(answer: httpx.Response) -> None:
    rec = Recorder(answer)
    client(rec).close_session("s-9f2c")
    assert rec.requests[0].method == "DELETE"
    assert str(rec.requests[0].url).endswith("/sessions/s-9f2c")


def test_close_session_raises_when_the_worker_is_down() -> None:
    rec = Recorder(error(500, "boom"))
    with pytest.raises(ServiceError) as info:
        client(rec).close_session("s-9f2c")
    assert info.value.transient
    assert rec.calls == FAST.max_attempts


def test_start_job_sends_items_and_options() -> None:
    rec = Recorder(httpx.Response(202, json=job_json()))
    job = client(rec).start_job(
        "s-9f2c",
        "m42-s3-j7",
        [("1001", "https://example.com/p/1"), ("1002", "https://example.com/p/2")],
        timeout_s=30,
        wait_until="networkidle",
    )
    assert (job.id, job.status, job.total, job.done, job.failed) == ("j-77", "running", 50, 12, 1)
    assert job.started_at == dt.datetime(2026, 11, 22, 10, 0, 5, tzinfo=dt.UTC)
    assert job.finished_at is None
    assert not job.finished
    request = rec.requests[0]
    assert str(request.url) == "http://w1.test:8100/api/v1/sessions/s-9f2c/jobs"
    assert body(request) == {
        "job_key": "m42-s3-j7",
        "items": [
            {"item_id": "1001", "url": "https://example.com/p/1"},
            {"item_id": "1002", "url": "https://example.com/p/2"},
        ],
        "options": {"timeout_s": 30, "wait_until": "networkidle"},
    }


def test_start_job_retries_with_the_same_job_key() -> None:
    rec = Recorder(httpx.ConnectError("refused"), httpx.Response(200, json=job_json()))
    client(rec).start_job("s-9f2c", "m42-s3-j7", [("1", "https://e.com/")])
    assert [body(r)["job_key"] for r in rec.requests] == ["m42-s3-j7", "m42-s3-j7"]


@pytest.mark.parametrize("code", ["session_busy", "session_not_ready"])
def test_start_job_conflicts_are_not_retried(code: str) -> None:
    rec = Recorder(error(409, code))
    with pytest.raises(ServiceError) as info:
        client(rec).start_job("s-9f2c", "k", [("1", "https://e.com/")])
    assert info.value.code == code
    assert info.value.conflict
    assert rec.calls == 1


def test_get_job_reads_a_finished_job() -> None:
    rec = Recorder(
        httpx.Response(
            200,
            json=job_json(
                status="failed",
                finished_at="2026-11-22T10:05:00.123456+00:00",
                error={"code": "browser_crashed", "message": "oom"},
                progress={"total": 5},
            ),
        )
    )
    job = client(rec).get_job("j-77")
    assert job.finished
    assert job.error_code == "browser_crashed"
    assert (job.total, job.done, job.failed) == (5, 0, 0)
    assert job.finished_at == dt.datetime(2026, 11, 22, 10, 5, 0, 123456, tzinfo=dt.UTC)


def test_job_results_pages_with_cursor_and_limit() -> None:
    ok = {
        "item_id": "1001",
        "url": "https://example.com/p/1",
        "status": "ok",
        "http_status": 200,
        "fetched_at": "2026-11-22T10:00:07Z",
        "final_url": "https://example.com/p/1?x",
        "data": {"title": "T", "nested": [1, {"a": None}]},
        "error": None,
        "screenshot": "ignored",
    }
    failed = {
        "item_id": "1002",
        "url": "https://example.com/p/2",
        "status": "error",
        "http_status": None,
        "error": {"code": "blocked", "message": "captcha"},
    }
    rec = Recorder(
        httpx.Response(
            200, json={"results": [ok, failed], "next_cursor": "c-2", "job_status": "running"}
        ),
        httpx.Response(200, json={"results": [], "next_cursor": None, "job_status": "completed"}),
    )
    c = client(rec)
    page = c.job_results("j-77")
    assert page.next_cursor == "c-2"
    assert page.job_status == "running"
    first, second = page.results
    assert first.ok
    assert first.data == {"title": "T", "nested": [1, {"a": None}]}
    assert first.fetched_at == dt.datetime(2026, 11, 22, 10, 0, 7, tzinfo=dt.UTC)
    assert first.final_url == "https://example.com/p/1?x"
    assert not second.ok
    assert (second.error_code, second.error_message) == ("blocked", "captcha")
    assert second.fetched_at is None
    assert rec.requests[0].url.params == httpx.QueryParams({"limit": "500"})

    last = c.job_results("j-77", cursor="c-2", limit=100)
    assert last.results == []
    assert last.next_cursor is None
    assert last.job_status == "completed"
    assert rec.requests[1].url.params == httpx.QueryParams({"cursor": "c-2", "limit": "100"})


def test_for_worker_builds_from_a_registry_row() -> None:
    row = Worker(name="w1", base_url="http://w1.test/api/v1", api_key=KEY)
    rec = Recorder(httpx.Response(200, json={"status": "ok"}))
    c = WorkerClient.for_worker(
        row,
        Config({"http_deadline_s": 7, "http_max_attempts": 2}),
        transport=httpx.MockTransport(rec),
    )
    assert c.settings.deadline == 7
    assert c.settings.max_attempts == 2
    c.health()
    assert rec.requests[0].headers["Authorization"] == f"Bearer {KEY}"
    assert str(rec.requests[0].url) == "http://w1.test/api/v1/health"
    assert WorkerClient.for_worker(row).settings == ClientSettings()


def test_start_job_sends_the_site_selectors_in_options() -> None:
    rec = Recorder(httpx.Response(202, json=job_json()))
    client(rec).start_job("s-9f2c", "k", [("1", "https://e.com/")], selectors={"price": ".p"})
    assert body(rec.requests[0])["options"]["selectors"] == {"price": ".p"}


def test_provider_error_outside_post_sessions_is_a_transient_fault_of_the_worker() -> None:
    # Issue #15: the contract defines provider_error for POST /sessions only; elsewhere
    # a 502 is transient (the worker's fault), never a permanent rejection of a mission.
    for call in (
        lambda c: c.list_sessions(),
        lambda c: c.get_job("j-1"),
        lambda c: c.close_session("s-1"),
    ):
        rec = Recorder(*[error(502, "provider_error", "upstream")] * 3)
        with pytest.raises(ServiceError) as info:
            call(client(rec))
        assert info.value.code == "provider_error"
        assert info.value.transient
        assert info.value.infrastructure


def test_start_job_sends_the_pacing_and_robots_options() -> None:
    rec = Recorder(httpx.Response(202, json=job_json()))
    client(rec).start_job(
        "s-1",
        "m1-s1-j1",
        [("1", "https://example.com/p/1")],
        options={"delay_ms": 500, "respect_robots": True, "headers": {"User-Agent": "MC"}},
    )
    assert body(rec.requests[0])["options"] == {
        "delay_ms": 500,
        "respect_robots": True,
        "headers": {"User-Agent": "MC"},
        "timeout_s": 60,
        "wait_until": "load",
    }
