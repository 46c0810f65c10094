"""GET /api/missions/{id}/records/?format=jsonl|csv streams the local writer's records."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from localnode.models import LocalBatch, LocalRecord
from registry import tokens
from tests.factories import MissionFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("localnode.root_urls")]


@pytest.fixture
def mission_with_records() -> Any:
    mission = MissionFactory()
    now = timezone.now()
    batch = LocalBatch.objects.create(batch_key="b", mission_id=mission.pk, created_at=now)
    LocalRecord.objects.bulk_create(
        LocalRecord(
            mission_id=mission.pk,
            item_id=str(i),
            batch=batch,
            url=f"https://example.com/p/{i}",
            http_status=200,
            fetched_at=now,
            data={"title": f'Produto, "{i}"', "fields": {"price": "R$ 1,00"}},
            created_at=now,
        )
        for i in range(3)
    )
    return mission


def body(response: Any) -> str:
    return b"".join(response.streaming_content).decode()


def test_it_streams_jsonl(viewer_api: APIClient, mission_with_records: Any) -> None:
    response = viewer_api.get(f"/api/missions/{mission_with_records.pk}/records/?format=jsonl")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"] == (
        f'attachment; filename="mission-{mission_with_records.pk}-records.jsonl"'
    )
    lines = [json.loads(line) for line in body(response).splitlines()]
    assert [line["item_id"] for line in lines] == ["0", "1", "2"]
    assert lines[0]["data"]["fields"] == {"price": "R$ 1,00"}
    assert lines[0]["mission_id"] == mission_with_records.pk and lines[0]["http_status"] == 200


def test_it_streams_csv(viewer_api: APIClient, mission_with_records: Any) -> None:
    response = viewer_api.get(f"/api/missions/{mission_with_records.pk}/records/?format=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(body(response))))
    assert [r["item_id"] for r in rows] == ["0", "1", "2"]
    assert rows[1]["title"] == 'Produto, "1"'
    assert json.loads(rows[1]["data"])["fields"]["price"] == "R$ 1,00"


def test_jsonl_is_the_default_format(viewer_api: APIClient, mission_with_records: Any) -> None:
    response = viewer_api.get(f"/api/missions/{mission_with_records.pk}/records/")
    assert response["Content-Type"] == "application/x-ndjson"


def test_anonymous_is_401(anon_api: APIClient, mission_with_records: Any) -> None:
    response = anon_api.get(f"/api/missions/{mission_with_records.pk}/records/?format=csv")
    assert response.status_code == 401


def test_a_user_without_a_role_is_403(mission_with_records: Any) -> None:
    client = APIClient()
    user = UserFactory()
    client.credentials(HTTP_AUTHORIZATION=f"Token {tokens.issue(user)[1]}")
    response = client.get(f"/api/missions/{mission_with_records.pk}/records/")
    assert response.status_code == 403


def test_unknown_mission_is_404_and_bad_format_400(
    viewer_api: APIClient, mission_with_records: Any
) -> None:
    assert viewer_api.get("/api/missions/999999/records/?format=csv").status_code == 404
    response = viewer_api.get(f"/api/missions/{mission_with_records.pk}/records/?format=xml")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_format"


def test_a_mission_without_records_exports_an_empty_file(viewer_api: APIClient) -> None:
    mission = MissionFactory()
    response = viewer_api.get(f"/api/missions/{mission.pk}/records/?format=csv")
    assert body(response).splitlines() == [
        "mission_id,item_id,url,http_status,fetched_at,title,data"
    ]
