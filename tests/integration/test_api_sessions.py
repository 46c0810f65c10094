"""/api/sessions/: read-only browser sessions, never with proxy credentials."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from orchestrator.states import SessionStatus
from tests import factories

pytestmark = [
    pytest.mark.django_db,
    # Settings issue reported to the lead: whitenoise warns when STATIC_ROOT is absent.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

URL = "/api/sessions/"


def ids(client: APIClient, **params: str) -> set[int]:
    response = client.get(URL, params)
    assert response.status_code == 200, response.data
    return {s["id"] for s in response.data["results"]}


def test_list_and_detail_show_the_session_and_its_proxy_without_credentials(
    viewer_api: APIClient,
) -> None:
    session = factories.BrowserSessionFactory.create(status=SessionStatus.BUSY, phase="scraping")

    listed = viewer_api.get(URL)
    detail = viewer_api.get(f"{URL}{session.pk}/")

    assert [s["id"] for s in listed.data["results"]] == [session.pk]
    body = detail.data
    assert body["status"] == SessionStatus.BUSY
    assert body["worker"] == {"id": session.worker.pk, "name": session.worker.name}
    assert body["proxy"] == {
        "id": session.proxy.pk,
        "external_id": session.proxy.external_id,
        "type": "datacenter",
        "country": "BR",
    }
    for response in (listed, detail):
        text = response.content.decode()
        assert "proxy-secret-pass" not in text
        assert session.proxy.host not in text


def test_list_filters_by_status_mission_worker_and_proxy(viewer_api: APIClient) -> None:
    busy = factories.BrowserSessionFactory.create(status=SessionStatus.BUSY)
    failed = factories.BrowserSessionFactory.create(
        status=SessionStatus.FAILED,
        proxy=factories.ProxyFactory.create(type="residential", country="US"),
    )
    closed = factories.BrowserSessionFactory.create(
        status=SessionStatus.CLOSED, mission=busy.mission
    )

    assert ids(viewer_api, status="busy") == {busy.pk}
    assert ids(viewer_api, status="busy,failed") == {busy.pk, failed.pk}
    assert ids(viewer_api, mission=str(busy.mission_id)) == {busy.pk, closed.pk}
    assert ids(viewer_api, worker=str(failed.worker_id)) == {failed.pk}
    assert ids(viewer_api, proxy_type="residential") == {failed.pk}
    assert ids(viewer_api, proxy_country="us") == {failed.pk}


@pytest.mark.parametrize(
    "params", [{"status": "running"}, {"proxy_type": "satellite"}, {"mission": "abc"}]
)
def test_list_rejects_invalid_filters(viewer_api: APIClient, params: dict[str, str]) -> None:
    response = viewer_api.get(URL, params)

    assert response.status_code == 400
    assert set(params) <= set(response.data["error"]["fields"])


def test_cursor_pagination_walks_every_session_once(viewer_api: APIClient) -> None:
    sessions = [factories.BrowserSessionFactory.create() for _ in range(5)]
    seen: list[int] = []
    url: str | None = f"{URL}?page_size=2"
    while url:
        response = viewer_api.get(url)
        seen += [s["id"] for s in response.data["results"]]
        url = response.data["next"]

    assert seen == [s.pk for s in reversed(sessions)]


@pytest.mark.parametrize("value", ["1e400", "99999999999999999999999", "-1", "1.5"])
def test_a_mission_filter_that_is_not_a_valid_id_is_a_400(
    viewer_api: APIClient, value: str
) -> None:
    factories.BrowserSessionFactory.create()

    response = viewer_api.get(URL, {"mission": value, "worker": value})

    assert response.status_code == 400
    assert set(response.data["error"]["fields"]) == {"mission", "worker"}


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_sessions_are_read_only_even_for_admins(admin_api: APIClient, method: str) -> None:
    session = factories.BrowserSessionFactory.create()
    target = URL if method == "post" else f"{URL}{session.pk}/"

    response = getattr(admin_api, method)(target, {"status": "closed"}, format="json")

    assert response.status_code == 405
    session.refresh_from_db()
    assert session.status == SessionStatus.REQUESTED


@pytest.mark.parametrize(("role", "expected"), [(None, 401), ("viewer", 200), ("operator", 200)])
def test_reading_sessions_needs_viewer(
    make_api_client: Callable[..., APIClient], role: str | None, expected: int
) -> None:
    session = factories.BrowserSessionFactory.create()
    client = make_api_client(role)

    assert client.get(URL).status_code == expected
    assert client.get(f"{URL}{session.pk}/").status_code == expected


def test_list_query_count_does_not_grow_with_sessions(viewer_api: APIClient) -> None:
    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert viewer_api.get(URL).status_code == 200
        return len(ctx.captured_queries)

    for _ in range(3):
        factories.BrowserSessionFactory.create()
    count()  # warm per-process caches first
    few = count()
    for _ in range(27):
        factories.BrowserSessionFactory.create()

    assert count() == few
