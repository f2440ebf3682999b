"""Referral curves and thresholds against hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from app.engine.evaluation.referral import (
    referral_for_target,
    retained_auroc_curve,
    retained_count,
    retained_mean_curve,
    retained_means,
    threshold_for_referral,
)

# Five cases, uncertainty and correctness: the two most uncertain are the two errors.
UNCERTAINTY = torch.tensor([0.1, 0.9, 0.3, 0.7, 0.2], dtype=torch.float64)
CORRECT = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0], dtype=torch.float64)


def test_retained_counts() -> None:
    assert [retained_count(r, 10) for r in (0.0, 0.05, 0.1, 0.3, 0.95)] == [10, 10, 9, 7, 1]
    assert retained_count(0.5, 1) == 1
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        retained_count(1.0, 10)


def test_accuracy_rises_as_the_errors_are_referred() -> None:
    # kept by certainty: 0.1 (ok), 0.2 (ok), 0.3 (ok), 0.7 (err), 0.9 (err)
    assert retained_mean_curve(UNCERTAINTY, CORRECT, [0.0, 0.2, 0.4, 0.6]) == pytest.approx(
        [3 / 5, 3 / 4, 1.0, 1.0]
    )
    # the reverse ordering refers the right cases last: 3/5, 2/4, 1/3, 0/2
    reverse = retained_mean_curve(-UNCERTAINTY, CORRECT, [0.0, 0.2, 0.4, 0.6])
    assert reverse == pytest.approx([3 / 5, 2 / 4, 1 / 3, 0.0])


def test_ties_share_their_group_mean() -> None:
    tied = torch.tensor([0.5, 0.5, 0.1, 0.5], dtype=torch.float64)
    values = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    # 0.1 first (1.0); then the tied group of mean 1/3: 1, (1 + 1/3)/2, (1 + 2/3)/3, 2/4
    expected = torch.tensor([1.0, 2 / 3, 5 / 9, 0.5], dtype=torch.float64)
    assert torch.allclose(retained_means(tied, values), expected)
    assert torch.allclose(retained_means(tied, values[[1, 0, 2, 3]]), expected)


def test_dice_is_a_per_case_mean_too() -> None:
    dice = torch.tensor([0.9, 0.2, 0.8, 0.5, 0.7], dtype=torch.float64)
    assert retained_mean_curve(UNCERTAINTY, dice, [0.0, 0.4]) == pytest.approx([3.1 / 5, 2.4 / 3])


def test_retained_auroc() -> None:
    # positives 1, 3; scores of the positive class; the most uncertain case (0.9) is case 1
    score = torch.tensor([0.2, 0.6, 0.1, 0.8, 0.7], dtype=torch.float64)
    positive = torch.tensor([False, True, False, True, False])
    # all five: positives {0.6, 0.8} vs negatives {0.2, 0.1, 0.7}: pairs won 2 + 3 = 5 of 6
    # after referring case 1 (0.9): positive {0.8} vs {0.2, 0.1, 0.7}: 3 of 3
    # after referring cases 1 and 3: no positive left
    curve = retained_auroc_curve(UNCERTAINTY, score, positive, [0.0, 0.2, 0.4])
    assert curve[0] == pytest.approx(5 / 6) and curve[1] == pytest.approx(1.0)
    assert curve[2] is None


def test_thresholds_for_a_rate_and_for_a_retained_accuracy() -> None:
    assert threshold_for_referral(UNCERTAINTY, 0.2) == pytest.approx(0.7)  # refers 0.9
    assert threshold_for_referral(UNCERTAINTY, 0.4) == pytest.approx(0.3)  # refers 0.7, 0.9
    assert threshold_for_referral(UNCERTAINTY, 0.0) == pytest.approx(0.9)
    assert referral_for_target(UNCERTAINTY, CORRECT, 0.75) == pytest.approx(0.7)
    assert referral_for_target(UNCERTAINTY, CORRECT, 0.99) == pytest.approx(0.3)
    assert referral_for_target(UNCERTAINTY, CORRECT, 0.5) == pytest.approx(0.9)
    assert referral_for_target(UNCERTAINTY, 1 - CORRECT, 1.5) is None


def test_a_tied_cut_is_never_taken_inside_the_tie() -> None:
    tied = torch.tensor([0.1, 0.5, 0.5], dtype=torch.float64)
    values = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    # keeping 2 of 3 would need to split the tie: the answer keeps case 0 only
    assert referral_for_target(tied, values, 0.9) == pytest.approx(0.1)
