from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from registry import config
from registry.models import ConfigEntry

pytestmark = pytest.mark.django_db


def test_it_lists_every_key_with_its_default(viewer_api: APIClient) -> None:
    ConfigEntry.objects.create(key="max_retries", value=5)

    response = viewer_api.get("/api/config/")

    assert response.status_code == 200
    rows = {r["key"]: r for r in response.json()}
    assert set(rows) == set(config.KEYS)
    assert rows["max_retries"] == {
        "key": "max_retries",
        "value": 5,
        "default": 2,
        "type": "int",
        "description": config.KEYS["max_retries"].description,
        "min_value": 0,
        "max_value": 10,
        "is_default": False,
    }
    assert rows["paused"]["value"] is False
    assert rows["paused"]["is_default"] is True


def test_a_bad_stored_value_reads_as_the_default(viewer_api: APIClient) -> None:
    ConfigEntry.objects.create(key="max_retries", value="muitos")

    row = viewer_api.get("/api/config/max_retries/").json()

    assert (row["value"], row["is_default"]) == (2, True)


def test_admins_set_a_value_that_is_validated_and_coerced(admin_api: APIClient) -> None:
    response = admin_api.patch("/api/config/session_tick_s/", {"value": "2.5"}, format="json")

    assert response.status_code == 200
    assert response.json()["value"] == 2.5
    assert response.json()["is_default"] is False
    assert config.get("session_tick_s") == 2.5
    assert admin_api.put("/api/config/paused/", {"value": True}, format="json").json()["value"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_retries", 11),
        ("max_retries", "dois"),
        ("max_retries", True),
        ("paused", "talvez"),
        ("retry_jitter", 1.5),
        ("max_retries", None),
    ],
)
def test_it_refuses_an_invalid_value_naming_the_field(
    key: str, value: object, admin_api: APIClient
) -> None:
    response = admin_api.patch(f"/api/config/{key}/", {"value": value}, format="json")

    assert response.status_code == 400
    assert "value" in response.json()["error"]["fields"]
    assert not ConfigEntry.objects.exists()


def test_it_requires_a_value(admin_api: APIClient) -> None:
    response = admin_api.patch("/api/config/max_retries/", {}, format="json")

    assert response.status_code == 400
    assert "value" in response.json()["error"]["fields"]


def test_reset_returns_to_the_default(admin_api: APIClient) -> None:
    ConfigEntry.objects.create(key="max_retries", value=5)

    response = admin_api.post("/api/config/max_retries/reset/")

    assert response.status_code == 200
    assert (response.json()["value"], response.json()["is_default"]) == (2, True)
    assert not ConfigEntry.objects.exists()


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/config/nao_existe/"),
        ("patch", "/api/config/nao_existe/"),
        ("post", "/api/config/nao_existe/reset/"),
    ],
)
def test_unknown_keys_answer_404(method: str, url: str, admin_api: APIClient) -> None:
    response = getattr(admin_api, method)(url, {"value": 1}, format="json")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_viewers_read_but_cannot_write(viewer_api: APIClient, operator_api: APIClient) -> None:
    assert viewer_api.get("/api/config/max_retries/").status_code == 200
    assert viewer_api.patch("/api/config/max_retries/", {"value": 3}).status_code == 403
    assert operator_api.patch("/api/config/max_retries/", {"value": 3}).status_code == 403
    assert viewer_api.post("/api/config/max_retries/reset/").status_code == 403
    assert not ConfigEntry.objects.exists()


def test_anonymous_gets_401(anon_api: APIClient) -> None:
    assert anon_api.get("/api/config/").status_code == 401


def test_the_stuck_threshold_cannot_be_set_below_the_lease(admin_api: APIClient) -> None:
    # Issue #15 case 2: a session may be declared stuck only after a stalled holder's
    # lease has run out; the pair is validated on every change of either key.
    response = admin_api.patch("/api/config/session_stuck_after_s/", {"value": 30}, format="json")
    assert response.status_code == 400
    assert "lease_s (60)" in str(response.json())
    response = admin_api.patch("/api/config/lease_s/", {"value": 600}, format="json")
    assert response.status_code == 400
    assert config.load().session_stuck_after_s == 180
    ok = admin_api.patch("/api/config/session_stuck_after_s/", {"value": 60}, format="json")
    assert ok.status_code == 200


def test_a_contradicting_stored_pair_derives_the_threshold_from_the_lease() -> None:
    ConfigEntry.objects.create(key="lease_s", value=120)
    ConfigEntry.objects.create(key="session_stuck_after_s", value=30)
    assert config.load().session_stuck_after_s == 120
