from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from registry import tokens
from registry.models import ApiToken
from tests import factories

pytestmark = pytest.mark.django_db
URL = "/api/auth/token/"


@pytest.fixture(autouse=True)
def _fresh_throttle() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def test_it_returns_a_token_for_good_credentials(anon_api: APIClient) -> None:
    user = factories.UserFactory.create(username="ana", role="viewer")

    response = anon_api.post(URL, {"username": "ana", "password": "senha-forte-123"}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "expires_at"}
    assert tokens.find_live(body["token"]).user == user  # type: ignore[union-attr]


def test_the_token_authenticates_later_requests(anon_api: APIClient) -> None:
    factories.UserFactory.create(username="ana", role="viewer")
    token = anon_api.post(URL, {"username": "ana", "password": "senha-forte-123"}).json()["token"]

    anon_api.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    assert anon_api.get("/api/workers/").status_code == 200


def test_it_refuses_bad_credentials_with_the_error_shape(anon_api: APIClient) -> None:
    factories.UserFactory.create(username="ana")

    response = anon_api.post(URL, {"username": "ana", "password": "errada"}, format="json")

    # Well-formed but wrong: 401 (the schema's answer for credentials it cannot know).
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "not_authenticated"
    assert "username and password" in error["message"]
    assert not ApiToken.objects.exists()


def test_it_names_missing_fields(anon_api: APIClient) -> None:
    response = anon_api.post(URL, {}, format="json")

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"username", "password"}


def test_it_throttles_login_attempts_after_ten_per_minute(anon_api: APIClient) -> None:
    factories.UserFactory.create(username="ana")
    codes = [
        anon_api.post(URL, {"username": "ana", "password": "errada"}).status_code for _ in range(11)
    ]

    assert codes[:10] == [401] * 10
    assert codes[10] == 429
    assert (
        anon_api.post(URL, {"username": "ana", "password": "senha-forte-123"}).json()["error"][
            "code"
        ]
        == "throttled"
    )


def test_anonymous_requests_get_401_with_the_error_shape(anon_api: APIClient) -> None:
    response = anon_api.get("/api/proxies/")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
