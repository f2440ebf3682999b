"""The error bounds the ranking tests assert: they hold for perturbed probabilities, and are
not vacuous (a perturbation of one sign reaches a good part of them)."""

from __future__ import annotations

import pytest
import torch

from app.engine.acquisition import bald
from app.engine.batchbald import _exact_joint, batchbald, joint_entropy_with
from app.engine.stats.classification import entropy
from tests.engine.error_bounds import (
    bald_bound,
    batchbald_score_bound,
    expected_entropy_bound,
    joint_entropy_bound,
    relative_perturbation,
)


def _probs(passes: int, rows: int, classes: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(passes, rows, classes, generator=generator, dtype=torch.float64)
    return torch.softmax(logits, dim=-1)


def _perturbed(probs: torch.Tensor, size: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(probs.shape, generator=generator, dtype=torch.float64) * 2 - 1
    return probs * (1 + size * noise)


def _joint_entropy(probs: torch.Tensor, selected: list[int], x: int) -> float:
    joint = _exact_joint(probs[:, selected])
    weights = torch.ones(joint.shape[1], dtype=probs.dtype)
    return float(joint_entropy_with(joint, weights, probs[:, [x]])[0])


@pytest.mark.parametrize("seed", range(5))
def test_joint_entropy_moves_within_its_bound(seed: int) -> None:
    probs = _probs(20, 5, 4, seed)
    moved = _perturbed(probs, 1e-4, seed + 100)
    rel = relative_perturbation(moved, probs)
    for selected in ([], [0], [0, 1], [0, 1, 2]):
        change = abs(_joint_entropy(moved, selected, 4) - _joint_entropy(probs, selected, 4))
        bound = joint_entropy_bound(probs[:, selected], rel[:, selected], probs[:, 4], rel[:, 4])
        assert 0 < change <= float(bound)


def test_one_signed_perturbation_reaches_most_of_the_entropy_bound() -> None:
    # Every p_c < 1/e grows by the same relative 1e-6: H moves by 1e-6 (H - 1), the bound is
    # 1e-6 (H + 1); for 100 near-uniform classes (H ~ 4.6) that is about 0.64 of the bound.
    probs = torch.full((1, 1, 100), 0.01, dtype=torch.float64)
    moved = probs * (1 + 1e-6)
    change = float((entropy(moved) - entropy(probs)).abs().sum())
    bound = float(expected_entropy_bound(probs, relative_perturbation(moved, probs)).sum())
    assert 0.6 * bound <= change <= bound


@pytest.mark.parametrize("seed", range(5))
def test_batchbald_gains_move_within_the_bound_of_their_two_scores(seed: int) -> None:
    probs = _probs(30, 12, 5, seed)  # C = 5: k = 5 picks stay exact (5^4 <= 1000)
    moved = _perturbed(probs, 1e-5, seed + 100)
    rel = relative_perturbation(moved, probs)
    reference, perturbed = batchbald(probs, 5), batchbald(moved, 5)
    assert perturbed.indices == reference.indices
    previous = 0.0
    for step, x in enumerate(reference.indices):
        bound = batchbald_score_bound(probs, rel, reference.indices[:step], x)
        assert abs(perturbed.gains[step] - reference.gains[step]) <= bound + previous
        previous = bound


def test_bald_bound_covers_float32_rounding_and_the_perturbation() -> None:
    probs = _probs(30, 40, 10, seed=7)
    moved = _perturbed(probs, 1e-5, seed=8).float()
    rel = relative_perturbation(moved, probs)
    change = (bald(moved).double() - bald(probs)).abs()
    assert bool((change <= bald_bound(probs, rel)).all())


def test_a_zero_reference_probability_is_refused() -> None:
    with pytest.raises(ValueError, match="positive reference"):
        relative_perturbation(torch.ones(2), torch.tensor([1.0, 0.0]))
