"""Leases expire by the database clock and fence out a process that stalled past them."""

from __future__ import annotations

import logging
import time

import pytest
from django.db.models import Q
from django.db.models.functions import Now

from orchestrator import allocation
from orchestrator.models import Mission
from orchestrator.states import MissionStatus
from tests import factories
from tests.patience import Deadline

pytestmark = pytest.mark.django_db


def test_a_claimed_row_is_not_claimed_again_while_its_lease_lasts() -> None:
    factories.MissionFactory.create_batch(3)
    queued = Q(status=MissionStatus.QUEUED)

    first = allocation.claim(Mission, queued, owner="a", lease_s=60, limit=2)
    second = allocation.claim(Mission, queued, owner="b", lease_s=60, limit=5)

    assert len(first) == 2 and len(second) == 1
    assert {lease.id for lease in first}.isdisjoint({lease.id for lease in second})


def test_a_stalled_owner_writes_nothing_after_its_lease_was_taken_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mission = factories.MissionFactory()
    queued = Q(pk=mission.pk)
    (stale,) = allocation.claim(Mission, queued, owner="stalled", lease_s=0.2, limit=1)

    # Wait (on the database clock) until the lease has expired, then another takes it.
    deadline = Deadline(5)  # a hang guard, counted in the machine's time
    while not Mission.objects.filter(pk=mission.pk, locked_until__lt=Now()).exists():
        assert not deadline.expired(), "lease never expired"
        time.sleep(0.05)
    (fresh,) = allocation.claim(Mission, queued, owner="fresh", lease_s=60, limit=1)
    assert fresh.token == stale.token + 1

    with caplog.at_level(logging.WARNING):
        won = allocation.release(Mission, stale, "stalled", wait_reason="stale write")

    assert won is False
    assert "STALE_LEASE" in caplog.text
    mission.refresh_from_db()
    assert mission.wait_reason == "" and mission.locked_by == "fresh"
    assert allocation.release(Mission, fresh, "fresh", wait_reason="ok") is True


def test_the_reaper_clears_expired_marks_but_keeps_the_token() -> None:
    mission = factories.MissionFactory()
    (lease,) = allocation.claim(Mission, Q(pk=mission.pk), owner="dead", lease_s=0.05, limit=1)
    deadline = Deadline(5)  # a hang guard, counted in the machine's time
    while not Mission.objects.filter(pk=mission.pk, locked_until__lt=Now()).exists():
        assert not deadline.expired(), "lease never expired"
        time.sleep(0.05)

    assert allocation.reap_expired_leases() == 1

    mission.refresh_from_db()
    assert (mission.locked_by, mission.locked_until) == ("", None)
    assert mission.lease_token == lease.token
    assert allocation.release(Mission, lease, "dead") is False
