"""The local Worker API v1 (docs/contracts/worker-api.md), through Django's test client."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.test import Client
from django.test.client import Client as DjangoClient
from django.utils import timezone

from localnode import engines
from localnode.models import LocalJob, LocalResult, LocalSession, LocalWorkerState

pytestmark = [pytest.mark.django_db, pytest.mark.urls("localnode.root_urls")]

BASE = "/local/worker/api/v1"
KEY = "local-worker-key"


class Api:
    def __init__(self, client: DjangoClient, key: str | None = KEY):
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(BASE + path, params, headers=self.headers)

    def post(self, path: str, body: Any) -> Any:
        raw = body if isinstance(body, str | bytes) else json.dumps(body)
        return self.client.post(
            BASE + path, raw, content_type="application/json", headers=self.headers
        )

    def delete(self, path: str) -> Any:
        return self.client.delete(BASE + path, headers=self.headers)


@pytest.fixture
def api(settings: Any) -> Api:
    settings.LOCALNODE_API_KEY = KEY
    return Api(Client())


def open_session(api: Api, key: str = "m1-s1", **extra: Any) -> dict[str, Any]:
    response = api.post("/sessions", {"session_key": key, **extra})
    assert response.status_code in (200, 201), response.content
    return response.json()


def start_job(api: Api, session_id: str, key: str = "m1-s1-j1", n: int = 3) -> dict[str, Any]:
    items = [{"item_id": str(i), "url": f"https://example.com/p/{i}"} for i in range(n)]
    response = api.post(f"/sessions/{session_id}/jobs", {"job_key": key, "items": items})
    assert response.status_code in (200, 202), response.content
    return response.json()


def add_results(job_id: str, item_ids: list[str]) -> None:
    job = LocalJob.objects.get(pk=int(job_id[2:]))
    start = LocalResult.objects.filter(job=job).count()
    now = timezone.now()
    for offset, item_id in enumerate(item_ids, start=1):
        LocalResult.objects.create(
            job=job,
            sequence=start + offset,
            item_id=item_id,
            url=f"https://example.com/p/{item_id}",
            status="ok",
            http_status=200,
            fetched_at=now,
            data={"title": f"P{item_id}"},
        )


def test_health_reports_version_providers_and_capacity(api: Api) -> None:
    open_session(api)
    body = api.get("/health").json()
    assert body["status"] == "ok"
    assert body["providers"] == ["local"]
    assert body["capacity"] == {"max_sessions": 8, "active_sessions": 1}


def test_it_answers_401_without_the_bearer_key(api: Api) -> None:
    for anonymous in (Api(Client(), key=None), Api(Client(), key="wrong")):
        response = anonymous.get("/health")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


def test_it_needs_no_key_when_none_is_configured(settings: Any) -> None:
    settings.LOCALNODE_API_KEY = ""
    assert Api(Client(), key=None).get("/health").status_code == 200


def test_creating_a_session_is_idempotent_on_its_key(api: Api) -> None:
    first = api.post(
        "/sessions",
        {
            "session_key": "m42-s3",
            "proxy": {"id": "px-17", "type": "residential", "url": "http://u:p@203.0.113.7:8000"},
            "labels": {"mission_id": "42"},
            "some_future_field": True,
        },
    )
    again = api.post("/sessions", {"session_key": "m42-s3"})
    assert first.status_code == 201
    assert again.status_code == 200
    body = first.json()
    assert again.json()["id"] == body["id"]
    assert body["status"] == "ready" and body["phase"] == "idle"
    assert body["proxy_id"] == "px-17" and body["job_id"] is None and body["error"] is None
    assert body["provider"] == "local"
    assert "u:p" not in first.content.decode()  # the proxy's credentials never leave
    assert LocalSession.objects.count() == 1


def test_it_rejects_a_body_that_is_not_json(api: Api) -> None:
    response = api.post("/sessions", "{not json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_it_names_the_invalid_fields(api: Api) -> None:
    response = api.post(
        "/sessions",
        {"session_key": "bad key!", "engine": "tractor", "proxy": {"url": "ftp://x"}},
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert set(error["fields"]) == {"session_key", "engine", "proxy.url"}
    assert api.post("/sessions", ["not", "an", "object"]).status_code == 422


def test_it_refuses_sessions_beyond_capacity(api: Api) -> None:
    LocalWorkerState.objects.update_or_create(pk=1, defaults={"max_sessions": 2})
    a, _ = open_session(api, "a"), open_session(api, "b")
    response = api.post("/sessions", {"session_key": "c"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "capacity_exhausted"
    assert api.post("/sessions", {"session_key": "a"}).status_code == 200  # known key: no slot
    assert api.delete(f"/sessions/{a['id']}").status_code == 204
    assert api.post("/sessions", {"session_key": "c"}).status_code == 201


def test_a_browser_session_without_chromium_is_a_provider_error(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        engines, "browser_unavailable_reason", lambda: "Chromium is not installed at /x"
    )
    response = api.post("/sessions", {"session_key": "b1", "engine": "browser"})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "provider_error" and "Chromium" in error["message"]


def test_listing_shows_held_and_recently_ended_sessions(api: Api) -> None:
    held = open_session(api, "held")
    recent = open_session(api, "recent")
    old = open_session(api, "old")
    api.delete(f"/sessions/{recent['id']}")
    api.delete(f"/sessions/{old['id']}")
    LocalSession.objects.filter(session_key="old").update(
        closed_at=timezone.now() - dt.timedelta(minutes=11)
    )
    listed = {s["session_key"]: s["status"] for s in api.get("/sessions").json()["sessions"]}
    assert listed == {"held": "ready", "recent": "closed"}
    assert api.get(f"/sessions/{held['id']}").json()["session_key"] == "held"


def test_unknown_sessions_and_jobs_are_404(api: Api) -> None:
    for path, code in [
        ("/sessions/s-999", "session_not_found"),
        ("/sessions/nonsense", "session_not_found"),
        ("/jobs/j-999", "job_not_found"),
        ("/jobs/j-999/results", "job_not_found"),
    ]:
        response = api.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == code
    response = api.post("/sessions/s-999/jobs", {"job_key": "k", "items": []})
    assert response.status_code == 404


def test_delete_is_204_always_and_cancels_the_running_job(api: Api) -> None:
    session = open_session(api)
    job = start_job(api, session["id"])
    assert api.delete(f"/sessions/{session['id']}").status_code == 204
    assert api.delete(f"/sessions/{session['id']}").status_code == 204
    assert api.delete("/sessions/s-424242").status_code == 204
    assert api.get(f"/jobs/{job['id']}").json()["status"] == "cancelled"
    closed = api.get(f"/sessions/{session['id']}").json()
    assert closed["status"] == "closed" and closed["job_id"] is None


def test_creating_a_job_is_idempotent_and_makes_the_session_busy(api: Api) -> None:
    session = open_session(api)
    first = api.post(
        f"/sessions/{session['id']}/jobs",
        {
            "job_key": "m1-s1-j1",
            "items": [{"item_id": "1001", "url": "https://example.com/p/1", "extra": 1}],
            "options": {"timeout_s": 30, "wait_until": "load"},
        },
    )
    again = api.post(
        f"/sessions/{session['id']}/jobs",
        {"job_key": "m1-s1-j1", "items": [{"item_id": "x", "url": "https://example.com/"}]},
    )
    assert first.status_code == 202 and again.status_code == 200
    job = first.json()
    assert again.json()["id"] == job["id"]
    assert job["status"] == "queued" and job["session_id"] == session["id"]
    assert job["progress"] == {"total": 1, "done": 0, "failed": 0}
    busy = api.get(f"/sessions/{session['id']}").json()
    assert busy["status"] == "busy" and busy["job_id"] == job["id"]
    assert api.get(f"/jobs/{job['id']}").json()["job_key"] == "m1-s1-j1"


def test_a_second_job_on_a_busy_session_is_409_session_busy(api: Api) -> None:
    session = open_session(api)
    start_job(api, session["id"], "j1")
    response = api.post(
        f"/sessions/{session['id']}/jobs",
        {"job_key": "j2", "items": [{"item_id": "1", "url": "https://example.com/"}]},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "session_busy"


def test_a_job_on_a_closed_session_is_409_session_not_ready(api: Api) -> None:
    session = open_session(api)
    api.delete(f"/sessions/{session['id']}")
    response = api.post(
        f"/sessions/{session['id']}/jobs",
        {"job_key": "j1", "items": [{"item_id": "1", "url": "https://example.com/"}]},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "session_not_ready"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"items": [{"item_id": "1", "url": "https://e.com/"}]}, "job_key"),
        ({"job_key": "j", "items": []}, "items"),
        ({"job_key": "j", "items": [{"item_id": "1", "url": "ftp://e.com/"}]}, "items[0].url"),
        ({"job_key": "j", "items": [{"item_id": "", "url": "https://e.com/"}]}, "items[0].item_id"),
        (
            {
                "job_key": "j",
                "items": [
                    {"item_id": "1", "url": "https://e.com/a"},
                    {"item_id": "1", "url": "https://e.com/b"},
                ],
            },
            "items[1].item_id",
        ),
        (
            {
                "job_key": "j",
                "items": [{"item_id": "1", "url": "https://e.com/"}],
                "options": {"timeout_s": -1},
            },
            "options.timeout_s",
        ),
    ],
)
def test_an_invalid_job_is_422_naming_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    session = open_session(api)
    response = api.post(f"/sessions/{session['id']}/jobs", body)
    assert response.status_code == 422
    assert field in response.json()["error"]["fields"]


def test_results_page_across_a_running_job(api: Api) -> None:
    session = open_session(api)
    job = start_job(api, session["id"], n=5)
    LocalJob.objects.filter(pk=int(job["id"][2:])).update(status="running")

    empty = api.get(f"/jobs/{job['id']}/results").json()
    assert empty["results"] == [] and empty["job_status"] == "running"
    assert empty["next_cursor"] is not None  # running: keep polling from here

    add_results(job["id"], ["0", "1", "2"])
    page1 = api.get(f"/jobs/{job['id']}/results", cursor=empty["next_cursor"], limit=2).json()
    assert [r["item_id"] for r in page1["results"]] == ["0", "1"]
    result = page1["results"][0]
    assert result["status"] == "ok" and result["http_status"] == 200 and result["error"] is None
    assert result["final_url"] == result["url"] and result["data"] == {"title": "P0"}

    page2 = api.get(f"/jobs/{job['id']}/results", cursor=page1["next_cursor"], limit=2).json()
    assert [r["item_id"] for r in page2["results"]] == ["2"]
    # Nothing new yet: the same cursor comes back.
    page3 = api.get(f"/jobs/{job['id']}/results", cursor=page2["next_cursor"]).json()
    assert page3["results"] == [] and page3["next_cursor"] == page2["next_cursor"]
    # Re-reading a cursor gives the same results, then those finished since.
    add_results(job["id"], ["3"])
    reread = api.get(f"/jobs/{job['id']}/results", cursor=page1["next_cursor"]).json()
    assert [r["item_id"] for r in reread["results"]] == ["2", "3"]

    add_results(job["id"], ["4"])
    LocalJob.objects.filter(pk=int(job["id"][2:])).update(status="completed")
    partial = api.get(f"/jobs/{job['id']}/results", cursor=reread["next_cursor"], limit=1).json()
    assert [r["item_id"] for r in partial["results"]] == ["4"]
    assert partial["next_cursor"] is None and partial["job_status"] == "completed"
    everything = api.get(f"/jobs/{job['id']}/results", limit=2).json()
    assert len(everything["results"]) == 2 and everything["next_cursor"] is not None


def test_a_finished_job_with_more_results_than_the_limit_keeps_a_cursor(api: Api) -> None:
    session = open_session(api)
    job = start_job(api, session["id"], n=3)
    add_results(job["id"], ["0", "1", "2"])
    LocalJob.objects.filter(pk=int(job["id"][2:])).update(status="completed")
    first = api.get(f"/jobs/{job['id']}/results", limit=2).json()
    last = api.get(f"/jobs/{job['id']}/results", cursor=first["next_cursor"], limit=2).json()
    assert first["next_cursor"] is not None
    assert [r["item_id"] for r in last["results"]] == ["2"] and last["next_cursor"] is None


def test_bad_cursor_or_limit_is_422(api: Api) -> None:
    session = open_session(api)
    job = start_job(api, session["id"])
    for params in ({"cursor": "garbage!"}, {"limit": "0"}, {"limit": "1001"}, {"limit": "x"}):
        response = api.get(f"/jobs/{job['id']}/results", **params)
        assert response.status_code == 422, params
        assert response.json()["error"]["code"] == "invalid_request"


def test_wrong_method_is_405_in_the_error_shape(api: Api) -> None:
    response = api.delete("/health")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
