"""orchestrator.counting: the pure parts (rounding, the planner's arithmetic)."""

from __future__ import annotations

import pytest

from orchestrator.counting import Counts, _planner_estimates, round_estimate


@pytest.mark.parametrize(
    ("n", "shown"),
    [(0, 0), (999.4, 999), (1234, 1230), (812_345, 812_000), (1_004_999, 1_000_000)],
)
def test_it_rounds_estimates_to_three_significant_digits(n: float, shown: int) -> None:
    assert round_estimate(n) == shown


def test_it_estimates_common_values_from_their_frequency() -> None:
    row = (1_000_000.0, 0.0, 7.0, ["FINALIZADO", "ERRO"], [0.8, 0.1])
    assert _planner_estimates(row, ["FINALIZADO", "ERRO"]) == pytest.approx(
        {"FINALIZADO": 800_000, "ERRO": 100_000}
    )


def test_it_shares_the_rest_evenly_among_values_not_in_the_common_list() -> None:
    # 10% of the rows spread over 7 - 2 other values; n_distinct < 0 is a fraction.
    row = (1_000_000.0, 0.0, 7.0, ["FINALIZADO", "ERRO"], [0.8, 0.1])
    assert _planner_estimates(row, ["CANCELADO"])["CANCELADO"] == pytest.approx(20_000)
    row = (100.0, 0.0, -0.05, ["A"], [0.5])
    assert _planner_estimates(row, ["B"])["B"] == pytest.approx(50 / 4)


def test_counts_tell_totals_and_which_are_approximate() -> None:
    counts = Counts({"A": 1, "B": 20_000}, frozenset({"B"}))
    assert counts.total(["A", "B", "C"]) == 20_001
    assert counts.any_approximate(["A", "B"]) and not counts.any_approximate(["A"])
