"""Crafted or mangled pagination cursors are a 400 naming `cursor` (not DRF's 404); the
cursors the API itself hands out keep working; the schema calls the parameter opaque."""

from __future__ import annotations

import base64

import pytest
from rest_framework.test import APIClient

from tests import factories

pytestmark = pytest.mark.django_db
CRAFTED = {
    "p-abc": base64.b64encode(b"p=abc").decode(),
    "not-base64": "@@@not-a-cursor@@@",
    "o-garbage": base64.b64encode(b"o=x&r=zz").decode(),
}


@pytest.mark.parametrize("cursor", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_crafted_cursor_is_a_400_naming_the_field(viewer_api: APIClient, cursor: str) -> None:
    response = viewer_api.get("/api/missions/", {"cursor": cursor})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert "Invalid cursor" in str(error["fields"]["cursor"])


def test_the_next_link_still_pages(viewer_api: APIClient) -> None:
    for _ in range(3):
        factories.MissionFactory()

    first = viewer_api.get("/api/missions/", {"page_size": 2}).json()
    second = viewer_api.get(first["next"])

    assert second.status_code == 200
    assert len(first["results"]) + len(second.json()["results"]) == 3


def test_the_schema_calls_the_cursor_opaque(viewer_api: APIClient) -> None:
    schema = viewer_api.get("/api/schema/", {"format": "json"}).json()
    parameters = schema["paths"]["/api/missions/"]["get"]["parameters"]
    cursor = next(p for p in parameters if p["name"] == "cursor")

    assert "any other value answers 400" in cursor["description"]
