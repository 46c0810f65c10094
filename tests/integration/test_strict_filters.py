"""Query parameters the schema types (boolean, date-time) refuse other values with a
400 naming the parameter, instead of being read as absent; valid values still filter."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests import factories

pytestmark = pytest.mark.django_db

REFUSED = [
    ("/api/workers/", "enabled", "maybe"),
    ("/api/workers/", "draining", "yes"),
    ("/api/writers/", "is_default", "2"),
    ("/api/proxies/", "enabled", "on"),
    ("/api/missions/", "needs_review", "nope"),
    ("/api/proxy-health/", "blocked", "x"),
    ("/api/execution/domains/", "paused", "sim"),
    ("/api/missions/", "created_after", "2024-01-01"),
    ("/api/missions/", "created_before", "yesterday"),
]


@pytest.mark.parametrize(("path", "name", "value"), REFUSED)
def test_a_value_outside_the_schema_is_a_400_naming_it(
    viewer_api: APIClient, path: str, name: str, value: str
) -> None:
    response = viewer_api.get(path, {name: value})

    assert response.status_code == 400, response.content
    assert name in response.json()["error"]["fields"]


def test_valid_values_still_filter(viewer_api: APIClient) -> None:
    factories.WorkerFactory(enabled=True)
    factories.WorkerFactory(enabled=False)

    on = viewer_api.get("/api/workers/", {"enabled": "true"}).json()["results"]
    off = viewer_api.get("/api/workers/", {"enabled": "0"}).json()["results"]
    since = viewer_api.get("/api/missions/", {"created_after": "2024-01-31T12:00:00Z"})

    assert [w["enabled"] for w in on] == [True]
    assert [w["enabled"] for w in off] == [False]
    assert since.status_code == 200


def test_page_size_from_zero_is_stated_in_the_schema(admin_api: APIClient) -> None:
    schema = admin_api.get("/api/schema/?format=json").json()
    params = schema["paths"]["/api/workers/"]["get"]["parameters"]

    assert next(p for p in params if p["name"] == "page_size")["schema"]["minimum"] == 0


def test_skip_invalid_is_a_boolean_too(admin_api: APIClient) -> None:
    response = admin_api.post("/api/site-configs/import/?skip_invalid=maybe", {}, format="json")

    assert response.status_code == 400
    assert "skip_invalid" in response.json()["error"]["fields"]


def test_skip_invalid_never_skips_a_body_of_the_wrong_shape(admin_api: APIClient) -> None:
    response = admin_api.post("/api/site-configs/import/?skip_invalid=true", 7, format="json")

    assert response.status_code == 400


def test_proxy_import_reads_skip_invalid_even_without_errors(admin_api: APIClient) -> None:
    response = admin_api.post("/api/proxies/import/?skip_invalid=maybe", [], format="json")

    assert response.status_code == 400
    assert "skip_invalid" in response.json()["error"]["fields"]
