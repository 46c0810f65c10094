"""One item's extracted record on the API and the dashboard, for the built-in writer and
an external writer's read-back; a writer without read-back is named in a 409, never an
empty answer (issue #21, writer-api.md "Optional read-back")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from localnode.models import LocalBatch, LocalRecord
from orchestrator.models import MissionItem
from orchestrator.states import ItemStatus
from tests.factories import MissionFactory, WriterFactory
from tests.fakes.writer import FakeWriter

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()


def _external_mission(fake: FakeWriter, n: int = 3) -> tuple[Any, list[MissionItem]]:
    writer = WriterFactory(name="armazem-externo", base_url=fake.base_url, api_key=fake.api_key)
    mission = MissionFactory(writer=writer)
    items = [
        MissionItem.objects.create(
            mission=mission, url=f"https://loja.example/p/{i}", status=ItemStatus.DONE
        )
        for i in range(n)
    ]
    for item in items:
        fake.records[(mission.pk, str(item.pk))] = {
            "item_id": str(item.pk),
            "url": item.url,
            "http_status": 200,
            "fetched_at": "2026-01-01T00:00:00+00:00",
            "data": {"title": f"Produto {item.pk}", "price": "10,00"},
        }
    return mission, items


def test_read_back_serves_the_record_to_the_api_and_the_pages(
    viewer_api: APIClient, fake_writer: FakeWriter, login: Callable[..., Client]
) -> None:
    fake_writer.read_back = True
    mission, items = _external_mission(fake_writer)
    last = items[-1]
    answer = viewer_api.get(f"/api/missions/{mission.pk}/items/{last.pk}/record/")
    assert answer.status_code == 200
    assert answer.json()["record"] == {"title": f"Produto {last.pk}", "price": "10,00"}
    detail = viewer_api.get(f"/api/missions/{mission.pk}/items/{last.pk}/").json()
    assert detail["record"]["title"] == f"Produto {last.pk}"
    client = login("viewer")
    page = client.get(f"/missoes/{mission.pk}/itens/{last.pk}/").content.decode()
    assert f"Produto {last.pk}" in page and "data-records-elsewhere" not in page
    listing = client.get(f"/missoes/{mission.pk}/").content.decode()
    for item in items:
        assert f'data-record-preview title="Produto {item.pk}"' in listing


def test_without_read_back_the_record_is_409_naming_the_writer(
    viewer_api: APIClient, fake_writer: FakeWriter, login: Callable[..., Client]
) -> None:
    mission, items = _external_mission(fake_writer)
    answer = viewer_api.get(f"/api/missions/{mission.pk}/items/{items[0].pk}/record/")
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert error["code"] == "records_in_external_writer"
    assert error["fields"] == {"writer": "armazem-externo"}
    assert "armazem-externo" in error["message"]
    client = login("viewer")
    page = client.get(f"/missoes/{mission.pk}/itens/{items[0].pk}/").content.decode()
    assert "data-records-elsewhere" in page and "armazem-externo" in page
    listing = client.get(f"/missoes/{mission.pk}/").content.decode()
    assert "data-records-elsewhere-items" in listing


def test_the_builtin_writers_record_and_a_404_when_there_is_none(
    viewer_api: APIClient,
) -> None:
    mission = MissionFactory()
    done = MissionItem.objects.create(mission=mission, url="https://a.example/1", status="done")
    failed = MissionItem.objects.create(mission=mission, url="https://a.example/2")
    now = timezone.now()
    batch = LocalBatch.objects.create(batch_key="b-rec", mission_id=mission.pk, created_at=now)
    LocalRecord.objects.create(
        mission_id=mission.pk,
        item_id=str(done.pk),
        batch=batch,
        data={"title": "Ok"},
        created_at=now,
    )
    ok = viewer_api.get(f"/api/missions/{mission.pk}/items/{done.pk}/record/")
    assert ok.status_code == 200 and ok.json()["record"] == {"title": "Ok"}
    none = viewer_api.get(f"/api/missions/{mission.pk}/items/{failed.pk}/record/")
    assert none.status_code == 404 and none.json()["error"]["code"] == "not_found"
    assert viewer_api.get(f"/api/missions/{mission.pk}/items/9999999/record/").status_code == 404
