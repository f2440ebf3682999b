"""Acquisition scores against hand-computed answers."""

from __future__ import annotations

import math

import pytest
import torch

from app.engine.acquisition import (
    bald,
    classification_score,
    least_confidence,
    margin,
    max_entropy,
    predictive_std,
)
from app.engine.stats import mutual_information, variation_ratio


def _disagreeing() -> torch.Tensor:
    """Row 0: two passes fully disagree (MI = ln 2); row 1: both say (0.5, 0.5) (MI = 0)."""
    return torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]], dtype=torch.float64)


def test_bald_is_mutual_information_ln2_for_disagreeing_passes() -> None:
    scores = bald(_disagreeing())
    assert scores.tolist() == pytest.approx([math.log(2), 0.0])
    assert torch.equal(scores, mutual_information(_disagreeing()))


def test_entropy_margin_and_least_confidence_of_a_fifty_fifty_mean() -> None:
    probs = _disagreeing()
    assert max_entropy(probs).tolist() == pytest.approx([math.log(2), math.log(2)])
    assert margin(probs).tolist() == pytest.approx([1.0, 1.0])
    assert least_confidence(probs).tolist() == pytest.approx([0.5, 0.5])


def test_margin_and_least_confidence_of_a_confident_row() -> None:
    probs = torch.tensor([[[0.7, 0.2, 0.1]], [[0.5, 0.4, 0.1]]])
    # p̄ = (0.6, 0.3, 0.1): margin 1 - 0.3, least confidence 1 - 0.6
    assert margin(probs).tolist() == pytest.approx([0.7])
    assert least_confidence(probs).tolist() == pytest.approx([0.4])


def test_variation_ratio_strategy_counts_disagreeing_votes() -> None:
    probs = torch.tensor([[[0.9, 0.1]], [[0.2, 0.8]], [[0.6, 0.4]], [[0.7, 0.3]]])
    assert classification_score("variation_ratio", probs).tolist() == pytest.approx([0.25])
    assert torch.equal(classification_score("variation_ratio", probs), variation_ratio(probs))


def test_predictive_std_is_the_largest_output_std_with_fixed_or_predicted_noise() -> None:
    means = torch.tensor([[[1.0, 0.0]], [[3.0, 0.0]]])  # Var_t = (1, 0) for row 0
    assert predictive_std(means, 3.0).tolist() == pytest.approx([2.0])  # sqrt(1 + 3)
    noise = torch.tensor([[[0.0, 8.0]], [[0.0, 8.0]]])
    assert predictive_std(means, noise).tolist() == pytest.approx([math.sqrt(8.0)])


def test_regression_strategy_is_refused_for_classification() -> None:
    with pytest.raises(ValueError, match="does not apply to classification"):
        classification_score("std", _disagreeing())
