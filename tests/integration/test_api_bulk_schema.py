"""Bulk and import bodies: the OpenAPI schema states each action's shape, and the API
reads only the part the action names (schemathesis holds the two together)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from orchestrator.models import Mission
from orchestrator.states import MissionStatus
from registry.models import Proxy, Worker
from tests import factories

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]


def schema_of(api: APIClient) -> dict[str, Any]:
    response = api.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def body_schema(schema: dict[str, Any], path: str) -> dict[str, Any]:
    body = schema["paths"][path]["post"]["requestBody"]
    assert body["required"] is True
    return body["content"]["application/json"]["schema"]


def component(schema: dict[str, Any], ref: str) -> dict[str, Any]:
    return schema["components"]["schemas"][ref.rsplit("/", 1)[1]]


def test_registry_bulk_body_is_a_one_of_by_action(admin_api: APIClient) -> None:
    schema = schema_of(admin_api)

    bulk = component(schema, body_schema(schema, "/api/workers/bulk/")["$ref"])

    assert bulk["discriminator"]["propertyName"] == "action"
    mapping = bulk["discriminator"]["mapping"]
    assert set(mapping) == {"create", "update", "delete", "enable", "disable"}
    create = component(schema, mapping["create"])["properties"]["items"]
    assert create["items"]["$ref"].endswith("/WorkerRequest")
    assert (create["minItems"], create["maxItems"]) == (1, 1000)
    update = component(schema, mapping["update"])["properties"]["items"]["items"]
    assert update["allOf"][0]["$ref"].endswith("/PatchedWorkerRequest")
    assert update["allOf"][1]["required"] == ["id"]
    ids = component(schema, mapping["delete"])["properties"]["ids"]
    assert (ids["minItems"], ids["maxItems"], ids["items"]["minimum"]) == (1, 1000, 1)


def test_mission_bulk_create_items_are_mission_create_bodies(operator_api: APIClient) -> None:
    schema = schema_of(operator_api)

    bulk = component(schema, body_schema(schema, "/api/missions/bulk/")["$ref"])

    mapping = bulk["discriminator"]["mapping"]
    assert set(mapping) == {"create", "cancel", "retry"}
    items = component(schema, mapping["create"])["properties"]["items"]
    assert items["items"]["$ref"].endswith("/MissionCreateRequest")


def test_proxy_import_json_entries_are_a_closed_object(admin_api: APIClient) -> None:
    schema = schema_of(admin_api)

    entry = component(schema, body_schema(schema, "/api/proxies/import/")["items"]["$ref"])

    assert entry["additionalProperties"] is False
    assert entry["required"] == ["id", "type", "host", "port"]


def test_registry_bulk_reads_only_what_the_action_names(admin_api: APIClient) -> None:
    item = {"name": "w1", "base_url": "http://10.0.0.1:8000/api/v1"}

    response = admin_api.post(
        "/api/workers/bulk/", {"action": "create", "items": [item], "ids": "x"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert Worker.objects.filter(name="w1").exists()


def test_registry_bulk_names_a_missing_id_as_a_conflict(admin_api: APIClient) -> None:
    response = admin_api.post(
        "/api/workers/bulk/",
        {"action": "update", "items": [{"id": 987654, "draining": True}]},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["items"]["0"]["id"] == (
        "Worker 987654 does not exist."
    )


def test_registry_bulk_names_a_repeated_unique_value(admin_api: APIClient) -> None:
    items = [{"name": "same", "base_url": f"http://10.0.0.{n}:8000/api/v1"} for n in (1, 2)]

    response = admin_api.post(
        "/api/workers/bulk/", {"action": "create", "items": items}, format="json"
    )

    assert response.status_code == 400
    assert "is listed twice" in response.json()["error"]["fields"]["items"]["1"]["name"]


@pytest.mark.parametrize("name", ["   ", "a\x00b"])
def test_a_name_the_schema_rules_out_is_refused(admin_api: APIClient, name: str) -> None:
    response = admin_api.post(
        "/api/workers/", {"name": name, "base_url": "http://10.0.0.1:8000"}, format="json"
    )

    assert response.status_code == 400
    assert "name" in response.json()["error"]["fields"]


def test_mission_bulk_cancel_ignores_items(operator_api: APIClient) -> None:
    mission = factories.MissionFactory.create()

    response = operator_api.post(
        "/api/missions/bulk/",
        {"action": "cancel", "ids": [mission.pk], "items": "not read"},
        format="json",
    )

    assert response.status_code == 200, response.content
    mission.refresh_from_db()
    assert mission.status == MissionStatus.CANCELADO


def test_mission_bulk_create_ignores_ids(operator_api: APIClient) -> None:
    factories.WriterFactory.create(is_default=True)
    items = [{"name": "m", "urls": ["https://loja.com/a"]}]

    response = operator_api.post(
        "/api/missions/bulk/", {"action": "create", "items": items, "ids": ["x"]}, format="json"
    )

    assert response.status_code == 201, response.content
    assert Mission.objects.filter(name="m").exists()


def test_proxy_import_accepts_every_documented_key(admin_api: APIClient) -> None:
    entry = {
        "id": "px-1",
        "type": "mobile",
        "scheme": "socks5",
        "host": "proxy.example.com",
        "port": 1080,
        "username": "u",
        "password": "p",
        "country": "br",
        "provider": "acme",
        "maxSessions": 3,
        "enabled": False,
    }

    response = admin_api.post("/api/proxies/import/", [entry], format="json")

    assert response.status_code == 200, response.content
    proxy = Proxy.objects.get(external_id="px-1")
    assert (proxy.scheme, proxy.country, proxy.max_sessions, proxy.enabled) == (
        "socks5",
        "BR",
        3,
        False,
    )
