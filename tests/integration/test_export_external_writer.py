"""Export of a mission written to an external writer: read-back streams, else a 409 that
names the writer, never an empty 200 (issue #21)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from orchestrator import records
from orchestrator.clients.writer import WriterClient
from tests.factories import MissionFactory, WriterFactory
from tests.fakes.writer import FakeWriter

pytestmark = [pytest.mark.django_db, pytest.mark.urls("localnode.root_urls")]


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()


def _mission_on(fake: FakeWriter, n: int = 3) -> Any:
    writer = WriterFactory(name="armazem-externo", base_url=fake.base_url, api_key=fake.api_key)
    mission = MissionFactory(writer=writer)
    for i in range(n):
        fake.records[(mission.pk, str(i))] = {
            "item_id": str(i),
            "url": f"https://loja.example/p/{i}",
            "http_status": 200,
            "fetched_at": "2026-01-01T00:00:00+00:00",
            "data": {"title": f"=Produto {i}"},
        }
    return mission


def body(response: Any) -> str:
    return b"".join(response.streaming_content).decode()


def test_without_read_back_export_is_409_naming_the_writer(
    viewer_api: APIClient, fake_writer: FakeWriter
) -> None:
    mission = _mission_on(fake_writer)
    for fmt in ("jsonl", "csv"):
        response = viewer_api.get(f"/api/missions/{mission.pk}/records/?format={fmt}")
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "records_in_external_writer"
        assert error["fields"] == {"writer": "armazem-externo"}
        assert "armazem-externo" in error["message"]


def test_with_read_back_export_streams_every_page(
    viewer_api: APIClient, fake_writer: FakeWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_writer.read_back = True
    mission = _mission_on(fake_writer, n=5)
    real = WriterClient.iter_records
    monkeypatch.setattr(
        WriterClient, "iter_records", lambda self, mid, limit=2: real(self, mid, limit)
    )
    response = viewer_api.get(f"/api/missions/{mission.pk}/records/?format=jsonl")
    assert response.status_code == 200
    lines = [json.loads(line) for line in body(response).splitlines()]
    assert [line["item_id"] for line in lines] == ["0", "1", "2", "3", "4"]
    assert lines[0]["mission_id"] == mission.pk and lines[0]["data"]["title"] == "=Produto 0"
    pages = [c for c in fake_writer.calls if c.path.startswith(f"/missions/{mission.pk}/records")]
    assert len(pages) == 3  # 2 + 2 + 1, following next_cursor


def test_with_read_back_csv_is_scrubbed_of_formulas(
    viewer_api: APIClient, fake_writer: FakeWriter
) -> None:
    fake_writer.read_back = True
    mission = _mission_on(fake_writer, n=1)
    response = viewer_api.get(f"/api/missions/{mission.pk}/records/?format=csv")
    rows = list(csv.DictReader(io.StringIO(body(response))))
    assert rows[0]["title"] == "'=Produto 0"


def test_a_read_back_writer_that_fails_is_503_not_an_empty_200(
    viewer_api: APIClient, fake_writer: FakeWriter
) -> None:
    fake_writer.read_back = True
    mission = _mission_on(fake_writer)
    assert records.offers_read_back(mission.writer) == "yes"  # remembered for a minute
    fake_writer.read_back = False  # the records route answers 404
    response = viewer_api.get(f"/api/missions/{mission.pk}/records/?format=jsonl")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "writer_unavailable"
