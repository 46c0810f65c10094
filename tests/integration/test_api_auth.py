from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import RequestFactory
from rest_framework.test import APIClient

from mission_control.clientip import client_ip
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


@pytest.mark.parametrize(
    ("count", "sprayer", "neighbour"),
    [
        # Behind one trusted proxy: the address it appended, not a forged left-most entry
        # (DRF's NUM_PROXIES would take "6.6.6.6" from a header with fewer entries).
        (1, "6.6.6.6, 203.0.113.7", "198.51.100.20"),
        (1, "203.0.113.7", "203.0.113.8"),
        # No trusted proxy: the header is ignored, REMOTE_ADDR (the proxy here) is the client.
        (0, "6.6.6.6, 203.0.113.7", None),
    ],
)
def test_the_login_throttle_keys_on_the_one_client_address(
    settings: Any, count: int, sprayer: str, neighbour: str | None
) -> None:
    """The throttle, the audit log and axes share mission_control.clientip.client_ip."""
    from mission_control.throttling import ScopedRateThrottle

    settings.TRUSTED_PROXY_COUNT = count
    factories.UserFactory.create(username="ana")
    proxy = "10.0.0.5"
    first = APIClient(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=sprayer)
    codes = [
        first.post(URL, {"username": "ana", "password": "errada"}).status_code for _ in range(11)
    ]
    assert codes[10] == 429
    # A new forged left-most entry does not escape the bucket.
    forged = APIClient(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"7.7.7.7, {sprayer}")
    assert forged.post(URL, {"username": "ana", "password": "errada"}).status_code == 429
    other = APIClient(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=neighbour or "198.51.100.20")
    expected = 401 if neighbour else 429  # without a trusted proxy everyone is the proxy
    assert other.post(URL, {"username": "ana", "password": "errada"}).status_code == expected
    request = RequestFactory().get("/", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=sprayer)
    assert ScopedRateThrottle().get_ident(request) == client_ip(request)


def test_a_short_forwarded_header_is_not_the_throttle_key(settings: Any) -> None:
    """Fewer X-Forwarded-For entries than trusted proxies: the request did not come
    through them, so REMOTE_ADDR is the client (DRF's own get_ident would take the
    entry the client wrote)."""
    from mission_control.throttling import ScopedRateThrottle

    settings.TRUSTED_PROXY_COUNT = 2
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="6.6.6.6")
    assert ScopedRateThrottle().get_ident(request) == "10.0.0.5"
    broken = RequestFactory().get("/", REMOTE_ADDR="not-an-address")
    assert ScopedRateThrottle().get_ident(broken) == "unknown"


def test_anonymous_requests_get_401_with_the_error_shape(anon_api: APIClient) -> None:
    response = anon_api.get("/api/proxies/")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
