"""Shift detector maths against hand-computed answers."""

from __future__ import annotations

import math

import pytest
import torch

from app.engine.shift import (
    ShiftRule,
    apply_shift,
    fit_class_gaussians,
    fit_ranges,
    fit_shift_rule,
    mahalanobis_distance,
    range_excess,
    threshold_for_false_alarms,
)


def test_class_gaussians_by_hand() -> None:
    # class 0: (0, 0), (2, 0); class 1: (0, 4), (0, 6) -> means (1, 0), (0, 5)
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0]])
    labels = torch.tensor([0, 0, 1, 1])
    means, precision = fit_class_gaussians(z, labels, ridge=0.0)
    assert torch.allclose(means, torch.tensor([[1.0, 0.0], [0.0, 5.0]], dtype=torch.float64))
    # centred rows (-1, 0), (1, 0), (0, -1), (0, 1): Σ = diag(2, 2) / 4 = diag(0.5, 0.5)
    assert torch.allclose(precision, torch.eye(2, dtype=torch.float64) * 2.0)
    # (3, 0): to class 0, diff (2, 0) -> 2·4 = 8; to class 1, (3, -5) -> 2·34 = 68: sqrt(8)
    distance = mahalanobis_distance(torch.tensor([[3.0, 0.0], [0.0, 5.0]]), means, precision)
    assert torch.allclose(distance, torch.tensor([math.sqrt(8.0), 0.0], dtype=torch.float64))


def test_mahalanobis_uses_the_full_precision() -> None:
    # P = [[2, 1], [1, 2]], diff (1, -1): 2 - 1 - 1 + 2 = 2
    precision = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    means = torch.zeros(1, 2, dtype=torch.float64)
    distance = mahalanobis_distance(torch.tensor([[1.0, -1.0], [1.0, 1.0]]), means, precision)
    # (1, 1): 2 + 1 + 1 + 2 = 6
    assert torch.allclose(distance, torch.tensor([2.0, 6.0], dtype=torch.float64).sqrt())


def test_ridge_keeps_a_dead_feature_invertible() -> None:
    z = torch.tensor([[0.0, 1.0], [0.0, 3.0], [0.0, 2.0]])  # feature 0 never varies
    _, precision = fit_class_gaussians(z, torch.zeros(3, dtype=torch.long), ridge=0.01)
    assert torch.isfinite(precision).all()
    # Σ_11 = 2/3, mean variance 1/3 -> ridge 1/300 on both: P_00 = 300, P_11 = 1/(2/3 + 1/300)
    assert precision[0, 0].item() == pytest.approx(300.0)
    assert precision[1, 1].item() == pytest.approx(1.0 / (2.0 / 3.0 + 1.0 / 300.0))


def test_range_excess_in_training_stds() -> None:
    train = torch.tensor([[0.0, 10.0], [2.0, 10.0]])
    low, high, scale = fit_ranges(train)
    assert low.tolist() == [0.0, 10.0] and high.tolist() == [2.0, 10.0]
    assert scale.tolist() == [1.0, 1.0]  # std 1, and a constant column gets 1
    rows = torch.tensor([[1.0, 10.0], [5.0, 10.0], [-0.5, 7.0]])
    # inside; 3 above the max of value 0; 3 below the min of value 1
    assert range_excess(rows, low, high, scale).tolist() == [0.0, 3.0, 3.0]


def test_threshold_for_false_alarms_counts_the_range_flags() -> None:
    scores = torch.arange(1.0, 21.0)  # 1..20
    none = torch.zeros(20, dtype=torch.bool)
    # keep ceil(0.9 * 20) = 18 rows: t = 18, 2 of 20 flagged
    assert threshold_for_false_alarms(scores, none, 0.1) == 18.0
    flags = none.clone()
    flags[0] = True  # row scoring 1 is already flagged by its range: t = the 18th of 2..20
    assert threshold_for_false_alarms(scores, flags, 0.1) == 19.0
    assert threshold_for_false_alarms(scores, none, 0.0) == math.inf
    with pytest.raises(ValueError):
        threshold_for_false_alarms(scores, none, 1.0)


def test_apply_shift_flags_distance_or_range() -> None:
    rule = ShiftRule(
        source="input",
        means=torch.zeros(1, 2, dtype=torch.float64),
        precision=torch.eye(2, dtype=torch.float64),
        threshold=2.0,
        low=torch.tensor([-1.0, -1.0], dtype=torch.float64),
        high=torch.tensor([1.0, 1.0], dtype=torch.float64),
        scale=torch.ones(2, dtype=torch.float64),
        margin=0.5,
    )
    x = torch.tensor([[0.5, 0.5], [3.0, 0.0], [1.4, 0.0], [1.6, 0.0]])
    out = apply_shift(rule, x.double(), x)
    assert out.flag.tolist() == [False, True, False, True]
    assert out.range_excess is not None
    assert out.range_excess.tolist() == pytest.approx([0.0, 2.0, 0.4, 0.6])


def test_held_out_false_alarms_near_the_rate() -> None:
    """Gaussian classes: the rate chosen on one held-out set holds on another."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0] * 5, [4.0] * 5])

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, 2, (n,), generator=generator)
        return centres[labels] + torch.randn(n, 5, generator=generator), labels

    train, labels = draw(2000)
    held, _ = draw(2000)
    fresh, _ = draw(4000)
    rule, flagged = fit_shift_rule("input", (train, labels, train), (held, held), 0.05, 1.0)
    assert flagged == pytest.approx(0.05, abs=0.002)
    fresh_rate = float(apply_shift(rule, fresh.double(), fresh).flag.double().mean())
    assert fresh_rate == pytest.approx(0.05, abs=0.02)
    far = fresh - 10.0
    assert apply_shift(rule, far.double(), far).flag.double().mean() > 0.99
