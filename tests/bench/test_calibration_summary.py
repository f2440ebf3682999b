"""The summaries of the calibration-defaults benchmark, against hand-computed answers."""

from __future__ import annotations

import math

import pytest

from bench.calibration_summary import (
    Estimate,
    best_fixed_point,
    mean_se,
    paired_gap,
    pooled_coverage,
)


def test_mean_and_standard_error_of_the_mean() -> None:
    # mean 2.5; sample variance ((1.5² + 0.5²) * 2) / 3 = 5/3; s.e. = sqrt(5/3) / 2
    estimate = mean_se([1.0, 2.0, 3.0, 4.0])
    assert estimate.mean == 2.5
    assert estimate.se == pytest.approx(math.sqrt(5.0 / 3.0) / 2.0, rel=1e-12)


def test_one_split_has_no_standard_error_and_none_is_refused() -> None:
    assert mean_se([0.7]) == Estimate(0.7, 0.0)
    with pytest.raises(ValueError, match="at least one"):
        mean_se([])


def test_identical_splits_have_zero_standard_error() -> None:
    estimate = mean_se([0.95, 0.95, 0.95])
    assert estimate.mean == pytest.approx(0.95) and estimate.se == 0.0


def test_estimate_text() -> None:
    assert Estimate(-1.23456, 0.0123).text() == "-1.235 ± 0.012"
    assert Estimate(0.5, 0.25).text(1) == "0.5 ± 0.2"


def test_pooled_coverage_weights_splits_by_their_rows() -> None:
    # per-split coverages 1.0 and 0.5 average to 0.75, but the pool is 11 of 12 rows
    assert pooled_coverage([2, 9], [2, 10]) == pytest.approx(11 / 12)
    assert pooled_coverage([57, 60], [60, 60]) == pytest.approx(117 / 120)


@pytest.mark.parametrize(
    ("covered", "rows"),
    [([1], [1, 2]), ([], []), ([0], [0]), ([3], [2]), ([-1], [2])],
)
def test_pooled_coverage_refuses_inconsistent_counts(covered: list[int], rows: list[int]) -> None:
    with pytest.raises(ValueError):
        pooled_coverage(covered, rows)


def test_best_fixed_point_is_the_best_mean_not_a_per_split_oracle() -> None:
    # "a" wins split 0 by far, "b" wins splits 1 and 2 narrowly: the best mean is "a"
    # (-1.0 vs -1.4), though "b" is best on more splits.
    lls = {"a": [-0.5, -1.2, -1.3], "b": [-2.0, -1.1, -1.1], "c": [-3.0, -3.0, -3.0]}
    assert best_fixed_point(lls) == "a"
    lls["b"][0] = -0.7  # now b's mean -0.967 beats a's -1.0
    assert best_fixed_point(lls) == "b"


def test_best_fixed_point_ties_go_to_the_first_point() -> None:
    assert best_fixed_point({"x": [-1.0, -2.0], "y": [-2.0, -1.0]}) == "x"


@pytest.mark.parametrize("lls", [{}, {"a": [-1.0], "b": [-1.0, -2.0]}, {"a": []}])
def test_best_fixed_point_needs_every_point_on_the_same_splits(
    lls: dict[str, list[float]],
) -> None:
    with pytest.raises(ValueError):
        best_fixed_point(lls)


def test_paired_gap_cancels_the_splits_difficulty() -> None:
    # Splits differ by whole nats, the difference is 0.1 or 0.3 on each: mean 0.2,
    # s.e. = stdev([0.1, 0.3]) / sqrt(2) = 0.1.
    gap = paired_gap([-1.0, -3.0], [-1.1, -3.3])
    assert gap.mean == pytest.approx(0.2)
    assert gap.se == pytest.approx(0.1)
    assert paired_gap([-1.0, -2.0], [-1.0, -2.0]) == Estimate(0.0, 0.0)


def test_paired_gap_needs_the_same_splits() -> None:
    with pytest.raises(ValueError, match="same splits"):
        paired_gap([-1.0], [-1.0, -2.0])
