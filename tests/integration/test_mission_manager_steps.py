"""`MissionManager` one step at a time: each method called once, one outcome checked
(as healthchecks tests `sendalerts`), against the database and a loopback writer."""

from __future__ import annotations

import random

import pytest
from django.utils import timezone

from orchestrator.managers.missions import MissionManager
from orchestrator.models import Mission, MissionItem
from orchestrator.states import ItemStatus, MissionStatus
from registry import config
from tests import factories
from tests.fakes.writer import FakeWriter

pytestmark = pytest.mark.django_db


def _manager() -> MissionManager:
    manager = MissionManager("step")
    manager.rng = random.Random(7)
    return manager


def _mission(status: str, items: list[str]) -> Mission:
    mission = factories.MissionFactory(status=status, n_items=len(items))
    for item, state in zip(mission.items.order_by("id"), items, strict=True):
        MissionItem.objects.filter(pk=item.pk).update(status=state)
    Mission.objects.filter(pk=mission.pk).update(
        done_items=items.count(ItemStatus.DONE), failed_items=items.count(ItemStatus.FAILED)
    )
    mission.refresh_from_db()
    return mission


def test_advance_running_stores_a_mission_whose_items_are_all_settled() -> None:
    mission = _mission(MissionStatus.EXTRAINDO, [ItemStatus.DONE, ItemStatus.FAILED])
    assert _manager().advance_running(timezone.now(), config.load()) == 1
    mission.refresh_from_db()
    assert mission.status == MissionStatus.ARMAZENANDO


def test_advance_running_leaves_a_mission_with_pending_items_alone() -> None:
    mission = _mission(MissionStatus.EXTRAINDO, [ItemStatus.DONE, ItemStatus.PENDING])
    assert _manager().advance_running(timezone.now(), config.load()) == 0
    mission.refresh_from_db()
    assert mission.status == MissionStatus.EXTRAINDO


def test_advance_running_fails_the_attempt_when_every_item_failed() -> None:
    mission = _mission(MissionStatus.ATRIBUIDO, [ItemStatus.FAILED, ItemStatus.FAILED])
    assert _manager().advance_running(timezone.now(), config.load()) == 1
    mission.refresh_from_db()
    # Every item failing is not recoverable: the mission ends in ERRO with that code.
    assert (mission.status, mission.error_code) == (MissionStatus.ERRO, "SCRAPE_ALL_ITEMS_FAILED")


def test_finalize_completes_the_mission_at_the_writer(fake_writer: FakeWriter) -> None:
    factories.WriterFactory(
        base_url=fake_writer.base_url, api_key=fake_writer.api_key, is_default=True
    )
    mission = _mission(MissionStatus.ARMAZENANDO, [ItemStatus.DONE])
    assert _manager().finalize(timezone.now(), config.load()) == 1
    mission.refresh_from_db()
    assert mission.status == MissionStatus.FINALIZADO
    assert len(fake_writer.complete_calls) == 1


def test_finalize_takes_four_claims_worth_of_missions_a_tick(fake_writer: FakeWriter) -> None:
    from orchestrator.managers.missions import FINALIZE_BATCHES
    from registry.models import ConfigEntry

    factories.WriterFactory(
        base_url=fake_writer.base_url, api_key=fake_writer.api_key, is_default=True
    )
    ConfigEntry.objects.create(key="claim_batch_size", value=2)
    for _ in range(2 * FINALIZE_BATCHES + 1):
        _mission(MissionStatus.ARMAZENANDO, [ItemStatus.DONE])
    manager, cfg = _manager(), config.load()
    assert manager.finalize(timezone.now(), cfg) == 2 * FINALIZE_BATCHES == 8
    assert manager.finalize(timezone.now(), cfg) == 1
    assert len(fake_writer.complete_calls) == 9


def test_finalize_waits_with_a_reason_when_no_writer_is_configured() -> None:
    mission = _mission(MissionStatus.ARMAZENANDO, [ItemStatus.DONE])
    assert _manager().finalize(timezone.now(), config.load()) == 0
    mission.refresh_from_db()
    assert mission.status == MissionStatus.ARMAZENANDO
    assert mission.wait_reason == "WRITER_NOT_CONFIGURED"
