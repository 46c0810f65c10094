"""The fair share of a domain's cap between its missions (pure)."""

from __future__ import annotations

from orchestrator.domain_slots import Contender, fair_targets, grants, wait_words


def test_a_big_mission_cannot_starve_a_small_one() -> None:
    big, small = Contender(1, 0, held=0, want=10), Contender(2, 0, held=0, want=1)
    assert fair_targets(3, [big, small]) == {1: 2, 2: 1}
    assert grants(3, [big, small]) == {1: 2, 2: 1}


def test_priority_then_age_decide_who_gets_the_odd_slot() -> None:
    old, new, urgent = Contender(1, 0, 0, 5), Contender(2, 0, 0, 5), Contender(3, 9, 0, 5)
    assert fair_targets(4, [old, new, urgent]) == {3: 2, 1: 1, 2: 1}
    assert fair_targets(2, [new, old]) == {1: 1, 2: 1}
    assert fair_targets(1, [new, old]) == {1: 1, 2: 0}


def test_a_freed_slot_goes_to_the_mission_below_its_share() -> None:
    # The big mission holds 3 of 3 sessions (it was alone); one ends: the small one
    # gets it, not the big one.
    big, small = Contender(1, 0, held=2, want=3), Contender(2, 0, held=0, want=1)
    assert grants(3, [big, small]) == {1: 0, 2: 1}
    # Nothing is free: nobody gets anything, and no session is taken away.
    assert grants(3, [Contender(1, 0, 3, 3), small]) == {1: 0, 2: 0}


def test_unused_share_goes_to_whoever_wants_more() -> None:
    assert grants(5, [Contender(1, 0, 0, 1), Contender(2, 0, 0, 9)]) == {1: 1, 2: 4}


def test_the_wait_words_name_the_cap() -> None:
    assert wait_words(4, 4, 2) == (
        "aguardando: limite do domínio, 4 de 4 sessões em uso por 2 missões"
    )
    assert wait_words(3, 3, 1).endswith("por 1 missão")
    assert wait_words(1, 1, 1) == (
        "aguardando: limite do domínio, 1 de 1 sessão em uso por 1 missão"
    )
