"""Classification metrics against hand-computed answers and a plain-loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from app.engine.evaluation.classification import (
    accuracy,
    area_under_risk_coverage,
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_bins,
    risk_coverage_curve,
    selective_risk,
)

PROBS = torch.tensor([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]], dtype=torch.float64)
TARGETS = torch.tensor([0, 0, 1])


def test_accuracy_counts_argmax_hits_with_first_index_on_ties() -> None:
    # argmax = [0, 1, 0]: only the first row is right.
    assert float(accuracy(PROBS, TARGETS)) == pytest.approx(1 / 3)


def test_negative_log_likelihood_is_mean_minus_log_true_probability() -> None:
    expected = -(math.log(0.7) + math.log(0.4) + math.log(0.5)) / 3
    assert float(negative_log_likelihood(PROBS, TARGETS)) == pytest.approx(expected, abs=1e-15)


def test_negative_log_likelihood_floors_a_zero_probability() -> None:
    probs = torch.tensor([[1.0, 0.0]])
    assert float(negative_log_likelihood(probs, torch.tensor([1]))) == pytest.approx(
        -math.log(1e-12)
    )


def test_brier_score_sums_squared_errors_over_classes() -> None:
    # Rows: 0.3² + 0.3² = 0.18, 0.6² + 0.6² = 0.72, 0.5² + 0.5² = 0.5.
    assert float(brier_score(PROBS, TARGETS)) == pytest.approx((0.18 + 0.72 + 0.5) / 3)
    perfect = torch.eye(3, dtype=torch.float64)
    assert float(brier_score(perfect, torch.arange(3))) == 0.0


def test_metrics_refuse_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        accuracy(PROBS, torch.tensor([0, 1]))


def test_reliability_bins_use_right_closed_equal_width_bins() -> None:
    confidence = torch.tensor([0.0, 1 / 15, 2 / 15 + 1e-9, 0.5, 1.0], dtype=torch.float64)
    correct = torch.tensor([True, False, True, True, False])
    bins = reliability_bins(confidence, correct, 15)
    # 0 and 1/15 fall in bin 0 = [0, 1/15]; just above 2/15 is bin 2; 0.5 is bin 7; 1.0 bin 14.
    assert bins.counts.tolist() == [2, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1]
    assert bins.accuracy[0].item() == 0.5
    assert bins.confidence[0].item() == pytest.approx(1 / 30)
    assert math.isnan(bins.accuracy[1].item())
    assert bins.edges.tolist() == pytest.approx([i / 15 for i in range(16)])


def test_ece_hand_computed() -> None:
    # Bin 14 holds 0.95 twice (1 of 2 right: gap 0.45), bin 8 holds 0.55 twice (both right:
    # gap 0.45); each has half the rows, so ECE = 0.45.
    confidence = torch.tensor([0.95, 0.95, 0.55, 0.55], dtype=torch.float64)
    correct = torch.tensor([True, False, True, True])
    assert float(expected_calibration_error(confidence, correct)) == pytest.approx(0.45)


def test_ece_is_zero_when_each_bin_is_calibrated() -> None:
    confidence = torch.full((4,), 0.75, dtype=torch.float64)
    correct = torch.tensor([True, True, True, False])
    assert float(expected_calibration_error(confidence, correct)) == pytest.approx(0.0, abs=1e-15)


def _loop_ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    total = 0.0
    for i in range(n_bins):
        lo, hi = i / n_bins, (i + 1) / n_bins
        in_bin = (confidence > lo) & (confidence <= hi)
        if i == 0:
            in_bin |= confidence == 0.0
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - confidence[in_bin].mean())
            total += in_bin.mean() * gap
    return float(total)


def test_ece_matches_a_plain_loop_reference() -> None:
    rng = np.random.default_rng(3)
    confidence = rng.uniform(0.1, 1.0, size=500)
    correct = rng.uniform(size=500) < confidence**2
    result = expected_calibration_error(torch.from_numpy(confidence), torch.from_numpy(correct))
    assert float(result) == pytest.approx(_loop_ece(confidence, correct, 15), abs=1e-12)


def test_risk_coverage_curve_hand_computed() -> None:
    uncertainty = torch.tensor([0.4, 0.1, 0.3, 0.2])
    correct = torch.tensor([False, True, True, False])
    # Most certain first: 0.1 right, 0.2 wrong, 0.3 right, 0.4 wrong.
    coverage, risk = risk_coverage_curve(uncertainty, correct)
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk.tolist() == pytest.approx([0.0, 1 / 2, 1 / 3, 2 / 4])
    assert float(area_under_risk_coverage(uncertainty, correct)) == pytest.approx(
        (0 + 1 / 2 + 1 / 3 + 1 / 2) / 4
    )


def test_ties_spread_their_errors_and_ignore_input_order() -> None:
    uncertainty = torch.tensor([0.1, 0.1, 0.5])
    correct = torch.tensor([True, False, True])
    _, risk = risk_coverage_curve(uncertainty, correct)
    # The tied pair has one error: expected 0.5 errors after one row, 1 after two.
    assert risk.tolist() == pytest.approx([0.5, 0.5, 1 / 3])
    _, swapped = risk_coverage_curve(uncertainty[[1, 0, 2]], correct[[1, 0, 2]])
    assert swapped.tolist() == risk.tolist()


def test_aurc_of_a_perfect_ranking_matches_the_closed_form() -> None:
    rows, errors = 10, 3
    uncertainty = torch.arange(rows, dtype=torch.float64)
    correct = uncertainty < rows - errors
    expected = sum((k - rows + errors) / (k * rows) for k in range(rows - errors + 1, rows + 1))
    assert float(area_under_risk_coverage(uncertainty, correct)) == pytest.approx(expected)


def test_selective_risk_keeps_ceil_of_coverage_rows() -> None:
    uncertainty = torch.arange(10, dtype=torch.float64)
    correct = torch.tensor([True] * 8 + [False] * 2)
    assert float(selective_risk(uncertainty, correct, 0.9)) == pytest.approx(1 / 9)
    assert float(selective_risk(uncertainty, correct, 0.8)) == 0.0
    assert float(selective_risk(uncertainty, correct, 0.01)) == 0.0  # at least one row
    assert float(selective_risk(uncertainty, correct, 1.0)) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="coverage"):
        selective_risk(uncertainty, correct, 0.0)
