"""An external writer that does not answer is "unknown", not "without read-back": its
missions' exports are unavailable for now (503, an upload retried later), never written
off as held elsewhere; pages ask it once, with one short attempt, and remember the
silence briefly (orchestrator/records.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from orchestrator import records, uploads
from orchestrator.models import Mission, MissionItem
from orchestrator.states import ItemStatus, MissionStatus
from registry import config
from tests import factories
from tests.fakes.uploader import FakeUploader
from tests.fakes.writer import FakeWriter

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()


def _finished_on(fake: FakeWriter) -> Any:
    writer = factories.WriterFactory(
        name="armazem-externo", base_url=fake.base_url, api_key=fake.api_key
    )
    mission = factories.MissionFactory(status=MissionStatus.FINALIZADO, writer=writer)
    item = MissionItem.objects.create(
        mission=mission, url="https://loja.example/p/1", status=ItemStatus.DONE
    )
    fake.records[(mission.pk, str(item.pk))] = {
        "item_id": str(item.pk),
        "url": item.url,
        "http_status": 200,
        "fetched_at": "2026-01-01T00:00:00+00:00",
        "data": {"title": "Produto 1"},
    }
    fake.read_back = True
    return mission


def _health_calls(fake: FakeWriter) -> int:
    return fake.count("GET", "^/health")


def test_a_writer_down_during_an_upload_pass_is_tried_again_not_written_off(
    fake_writer: FakeWriter, fake_uploader: FakeUploader
) -> None:
    factories.UploaderFactory(
        base_url=fake_uploader.base_url, api_key=fake_uploader.api_key, enabled=True
    )
    config.set_value("uploads_enabled", True)
    mission = _finished_on(fake_writer)
    fake_writer.down()
    assert uploads.run(config.load()) == 0
    assert Mission.objects.get(pk=mission.pk).export_upload_url == ""  # not NOT_UPLOADABLE

    fake_writer.up()
    cache.clear()  # UNKNOWN_TTL has passed
    assert uploads.run(config.load()) == 1
    assert Mission.objects.get(pk=mission.pk).export_upload_url.endswith(f"/f/m{mission.pk}-export")


@pytest.mark.urls("localnode.root_urls")
def test_an_export_while_the_writer_is_down_is_503_not_held_elsewhere(
    viewer_api: APIClient, fake_writer: FakeWriter
) -> None:
    mission = _finished_on(fake_writer)
    fake_writer.down()
    response = viewer_api.get(f"/api/missions/{mission.pk}/records/?format=jsonl")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "writer_unavailable"


def test_a_silent_writer_is_asked_once_and_remembered_briefly(
    fake_writer: FakeWriter, login: Callable[..., Client]
) -> None:
    mission = _finished_on(fake_writer)
    Mission.objects.filter(pk=mission.pk).update(records_delivered=1)
    fake_writer.fail_next_requests(10, 503)
    client = login("viewer")
    for _ in range(2):  # the live page polls
        page = client.get(f"/missoes/{mission.pk}/")
        assert page.status_code == 200
        text = page.content.decode()
        assert "data-export" not in text  # no button that would answer 503
        assert "armazem-externo</span>, que não respondeu agora" in text
        assert "não oferece leitura de volta" not in text
    assert _health_calls(fake_writer) == 1  # one attempt, then remembered

    fake_writer.clear_faults()
    cache.clear()  # UNKNOWN_TTL has passed
    text = client.get(f"/missoes/{mission.pk}/").content.decode()
    assert 'data-record-preview title="Produto 1"' in text and "data-export" in text


def test_a_hanging_writer_holds_a_page_for_one_short_attempt(
    fake_writer: FakeWriter, login: Callable[..., Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    mission = _finished_on(fake_writer)
    item = MissionItem.objects.get(mission=mission)
    monkeypatch.setattr(records, "QUICK_TIMEOUT_S", 0.2)
    fake_writer.hang_next(10, 2.0)
    client = login("viewer")
    page = client.get(f"/missoes/{mission.pk}/itens/{item.pk}/")
    assert page.status_code == 200
    assert _health_calls(fake_writer) == 1
    assert "armazem-externo" in page.content.decode()  # named as unavailable


def test_the_short_budget_is_one_attempt_within_the_configured_timeouts(
    fake_writer: FakeWriter,
) -> None:
    writer = factories.WriterFactory(base_url=fake_writer.base_url)
    config.set_value("http_read_timeout_s", 2.0)
    quick = records._client(writer, quick=True).settings
    assert (quick.max_attempts, quick.read_timeout) == (1, 2.0)
    assert quick.connect_timeout <= records.QUICK_TIMEOUT_S >= quick.deadline
    assert records._client(writer).settings.max_attempts == config.load()["http_max_attempts"]
