"""Split conformal maths against hand-computed answers, and the coverage guarantee."""

from __future__ import annotations

import math

import pytest
import torch

from app.engine.conformal import (
    ConformalRule,
    apply_rule,
    aps_scores,
    aps_sets,
    conformal_band,
    conformal_quantile,
    minimum_rows,
    normalised_residuals,
)


def test_quantile_is_the_ceil_n_plus_one_level_th_smallest() -> None:
    scores = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 7.0, 8.0, 6.0])  # n = 9
    # ceil(10 * 0.9) = 9 -> the largest; ceil(10 * 0.5) = 5 -> 5.0; ceil(10 * 0.75) = 8 -> 8.0
    assert conformal_quantile(scores, 0.9) == 9.0
    assert conformal_quantile(scores, 0.5) == 5.0
    assert conformal_quantile(scores, 0.75) == 8.0
    # ceil(10 * 0.95) = 10 > 9: no finite quantile
    assert conformal_quantile(scores, 0.95) == math.inf
    with pytest.raises(ValueError):
        conformal_quantile(scores, 1.0)


def test_minimum_rows_is_the_first_finite_quantile() -> None:
    for level in (0.5, 0.8, 0.9, 0.95, 0.99):
        n = minimum_rows(level)
        assert conformal_quantile(torch.zeros(n), level) == 0.0
        if n > 1:
            assert conformal_quantile(torch.zeros(n - 1), level) == math.inf
    assert minimum_rows(0.9) == 9


def test_normalised_residual_takes_the_worst_output() -> None:
    mean = torch.tensor([[0.0, 10.0], [1.0, 1.0]])
    std = torch.tensor([[2.0, 1.0], [0.5, 0.0]])
    target = torch.tensor([[3.0, 10.5], [0.0, 1.0]])
    # row 0: |3|/2 = 1.5, 0.5/1 -> 1.5; row 1: 1/0.5 = 2, exact target with std 0 -> 0
    assert normalised_residuals(mean, std, target).tolist() == [1.5, 2.0]
    assert (
        normalised_residuals(mean, std, target + torch.tensor([[0.0, 0.0], [0.0, 1.0]]))[1]
        == math.inf
    )


def test_band_is_mean_plus_minus_q_std() -> None:
    lower, upper = conformal_band(torch.tensor([[1.0]]), torch.tensor([[2.0]]), 1.5)
    assert (lower.item(), upper.item()) == (-2.0, 4.0)


def test_aps_scores_and_sets_by_hand() -> None:
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.25, 0.25, 0.5]])
    # row 0 ranked: 1 (0.6), 2 (0.3), 0 (0.1); row 1: 2 (0.5), then 0 and 1 tied (by index)
    scores = aps_scores(probs, torch.tensor([2, 1]))
    assert scores.tolist() == pytest.approx([0.9, 1.0])
    assert aps_scores(probs, torch.tensor([1, 0])).tolist() == pytest.approx([0.6, 0.75])
    # classes whose mass ranked above them is below the threshold (row 1: 0, 0.5, 0.75)
    assert aps_sets(probs, 0.7).tolist() == [[False, True, True], [True, False, True]]
    assert aps_sets(probs, 0.8).tolist() == [[False, True, True], [True, True, True]]
    assert aps_sets(probs, 0.55).tolist() == [[False, True, False], [True, False, True]]
    assert aps_sets(probs, 0.0).sum().item() == 0
    assert aps_sets(probs, math.inf).all()


def test_a_set_holds_every_class_whose_score_is_within_the_threshold() -> None:
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(50, 6, generator=generator) * 2, dim=1)
    for threshold in (0.3, 0.8, 0.95):
        sets = aps_sets(probs, threshold)
        for label in range(6):
            scores = aps_scores(probs, torch.full((50,), label))
            assert bool((sets[:, label] | (scores > threshold)).all())
        assert bool(sets.any(dim=1).all())  # never empty for a positive threshold


def test_apply_rule_builds_bands_or_sets() -> None:
    band = apply_rule(
        ConformalRule("normalised_residual", 0.9, 2.0), torch.tensor([[1.0]]), torch.tensor([[0.5]])
    )
    assert band.lower is not None and band.upper is not None and band.sets is None
    assert (band.lower.item(), band.upper.item(), band.level) == (0.0, 2.0, 0.9)
    sets = apply_rule(ConformalRule("aps", 0.8, 0.5), torch.tensor([[0.7, 0.3]]), None)
    assert sets.sets is not None and sets.sets.tolist() == [[True, False]]


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_coverage_guarantee_holds_on_twenty_random_splits(level: float) -> None:
    """A fixed, misspecified predictor (std wrong by a factor depending on x) on exchangeable
    data: on every split the coverage is >= level - 1/(n+1) - 3 sd, where the sd is that of the
    coverage given the calibration rows (Beta, variance ~ l(1-l)/(n+2); Vovk 2012) plus the
    test rows' binomial share; on average over the splits it is the level."""
    generator = torch.Generator().manual_seed(7)
    rows, n = 4000, 500
    x = torch.rand(rows, 1, generator=generator) * 4
    y = torch.sin(x) + (0.1 + 0.3 * x) * torch.randn(rows, 1, generator=generator)
    mean, std = torch.sin(x) + 0.05, torch.full_like(x, 0.4)
    coverages = []
    for split in range(20):
        order = torch.randperm(rows, generator=torch.Generator().manual_seed(split))
        cal, test = order[:n], order[n:]
        q = conformal_quantile(normalised_residuals(mean[cal], std[cal], y[cal]), level)
        lower, upper = conformal_band(mean[test], std[test], q)
        covered = ((y[test] >= lower) & (y[test] <= upper)).double().mean().item()
        tolerance = 3 * math.sqrt(level * (1 - level) * (1 / (n + 2) + 1 / test.shape[0]))
        assert covered >= level - 1 / (n + 1) - tolerance
        coverages.append(covered)
    assert sum(coverages) / 20 == pytest.approx(level, abs=0.01)
