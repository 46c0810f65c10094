"""Mission transitions call the `mission_transition` providers (one mechanism,
`mission_control.extensions`) inside their transaction: the one-row
`Mission.transition` and the batched `transitions.transition_many` alike."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pytest
from django.db import transaction

from mission_control import extensions
from orchestrator import etl_outbox
from orchestrator.models import TRANSITION_HOOK, Mission
from orchestrator.states import MissionStatus
from orchestrator.transitions import Move, transition_many
from tests import factories

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def test_the_etl_outbox_is_registered_through_extensions() -> None:
    assert etl_outbox.record_transition in extensions.providers(TRANSITION_HOOK)


def test_both_transition_paths_call_the_hook_inside_their_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[list[int], str, bool]] = []

    def record(missions: Sequence[Mission], to: str, now: dt.datetime) -> None:
        in_tx = transaction.get_connection().in_atomic_block
        calls.append(([m.pk for m in missions], to, in_tx))

    providers: dict[str, list[Any]] = extensions._providers
    monkeypatch.setitem(providers, TRANSITION_HOOK, [*providers[TRANSITION_HOOK], record])
    one, two, three = (factories.MissionFactory(status=MissionStatus.QUEUED) for _ in range(3))

    assert one.transition(MissionStatus.CANCELADO, now=NOW)
    with transaction.atomic():
        moved = transition_many([Move(two), Move(three)], MissionStatus.CANCELADO, now=NOW)

    assert len(moved) == 2
    assert calls == [
        ([one.pk], MissionStatus.CANCELADO, True),
        (sorted([two.pk, three.pk]), MissionStatus.CANCELADO, True),
    ]
