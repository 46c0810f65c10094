"""/api/ lists the collections and links the docs; anonymous visitors of /api/,
/api/docs/ and /api/schema/ are told how to authenticate (issues #13 and #18)."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests import factories

pytestmark = pytest.mark.django_db


def test_the_root_lists_every_collection_and_the_docs(viewer_api: APIClient) -> None:
    body = viewer_api.get("/api/").json()

    assert {"missions", "workers", "proxies", "webhooks", "sessions"} <= set(body["collections"])
    assert body["collections"]["missions"] == "http://testserver/api/missions/"
    assert body["docs"] == "http://testserver/api/docs/"
    assert body["auth"]["token"] == "http://testserver/api/auth/token/"
    for url in body["collections"].values():
        assert viewer_api.get(url).status_code == 200, url


@pytest.mark.parametrize("path", ["/api/", "/api/docs/", "/api/schema/"])
def test_anonymous_api_clients_get_a_401_saying_how_to_authenticate(path: str) -> None:
    response = Client().get(path, HTTP_ACCEPT="application/json")

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "not_authenticated"
    assert "POST /api/auth/token/" in error["message"]
    assert response["WWW-Authenticate"].startswith("Token")


@pytest.mark.parametrize("path", ["/api/", "/api/docs/", "/api/schema/"])
def test_anonymous_browsers_are_sent_to_the_login_page_and_back(path: str) -> None:
    response = Client().get(path, HTTP_ACCEPT="text/html,application/xhtml+xml")

    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={path}"


def test_a_bad_token_is_still_refused_by_the_view() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token mc_nope")

    assert client.get("/api/docs/").status_code == 401


def test_a_user_without_a_role_is_refused() -> None:
    browser = Client()
    browser.force_login(factories.UserFactory(role=None))

    assert browser.get("/api/", HTTP_ACCEPT="application/json").status_code == 403
    assert browser.get("/api/docs/").status_code == 403
