"""The mission page offers export for an external writer that gives records back."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.cache import cache
from django.test import Client

from orchestrator.models import Mission
from orchestrator.states import MissionStatus
from tests import factories
from tests.fakes.writer import FakeWriter

pytestmark = pytest.mark.django_db


def test_export_offered_when_the_external_writer_reads_back(
    login: Callable[..., Client], fake_writer: FakeWriter
) -> None:
    cache.clear()
    writer = factories.WriterFactory(
        name="armazem", base_url=fake_writer.base_url, api_key=fake_writer.api_key
    )
    mission = factories.MissionFactory(status=MissionStatus.FINALIZADO, writer=writer)
    Mission.objects.filter(pk=mission.pk).update(records_delivered=2)
    client = login("viewer")
    page = client.get(f"/missoes/{mission.pk}/").content.decode()
    assert "data-export" not in page and "data-records-elsewhere" in page
    fake_writer.read_back = True
    cache.clear()
    page = client.get(f"/missoes/{mission.pk}/").content.decode()
    assert "data-export" in page and "data-records-elsewhere" not in page
