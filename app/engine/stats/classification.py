"""Uncertainty statistics for classification over Monte Carlo passes.

Every function takes `probs: (N, B, C)`: N stochastic passes, B rows, C classes, each row of each
pass a probability vector. Entropies are in nats.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from app.engine.stats.intervals import percentile_interval


def mean_probabilities(probs: Tensor) -> Tensor:
    """Mean predictive distribution p̄ = (1/N) Σ_t p_t. probs: (N, B, C) -> (B, C)."""
    return probs.mean(dim=0)


def class_std(probs: Tensor) -> Tensor:
    """Per-class population std over passes, sqrt((1/N) Σ_t (p_t - p̄)²). (N, B, C) -> (B, C)."""
    return probs.std(dim=0, correction=0)


def entropy(p: Tensor) -> Tensor:
    """Shannon entropy H(p) = -Σ_c p_c ln p_c over the last dim, 0 ln 0 = 0. (..., C) -> (...)."""
    # clamp_min guards against tiny negative rounding errors, where entr would return -inf.
    terms: Tensor = torch.special.entr(p.clamp_min(0.0))
    return terms.sum(dim=-1)


def predictive_entropy(probs: Tensor) -> Tensor:
    """Total uncertainty H(p̄), the entropy of the mean distribution. (N, B, C) -> (B,)."""
    return entropy(mean_probabilities(probs))


def expected_entropy(probs: Tensor) -> Tensor:
    """Aleatoric uncertainty (1/N) Σ_t H(p_t). (N, B, C) -> (B,)."""
    return entropy(probs).mean(dim=0)


def mutual_information(probs: Tensor) -> Tensor:
    """Epistemic uncertainty (BALD): H(p̄) - (1/N) Σ_t H(p_t), clamped at 0. (N, B, C) -> (B,).

    Non-negative by Jensen's inequality; the clamp removes float rounding below zero.
    """
    return (predictive_entropy(probs) - expected_entropy(probs)).clamp_min(0.0)


def variation_ratio(probs: Tensor) -> Tensor:
    """Share of passes that disagree with the modal vote: 1 - f_m / N. (N, B, C) -> (B,).

    f_m counts the passes whose argmax is the most frequent argmax class of that row.
    """
    n_passes, _, n_classes = probs.shape
    votes = torch.nn.functional.one_hot(probs.argmax(dim=-1), n_classes).sum(dim=0)
    modal_count = votes.max(dim=-1).values.to(probs.dtype)
    return 1.0 - modal_count / n_passes


def predicted_class(probs: Tensor) -> Tensor:
    """Predicted label argmax_c p̄_c (first index on ties). (N, B, C) -> (B,) long."""
    return mean_probabilities(probs).argmax(dim=-1)


def confidence(probs: Tensor) -> Tensor:
    """Probability of the predicted label, max_c p̄_c. (N, B, C) -> (B,)."""
    return mean_probabilities(probs).max(dim=-1).values


@dataclass(frozen=True)
class ClassificationStats:
    """All classification statistics for one batch; (B, C) or (B,) tensors as noted."""

    mean: Tensor
    """(B, C) mean probabilities p̄."""
    std: Tensor
    """(B, C) population std of each class probability over passes."""
    ci_lower: Tensor
    """(B, C) lower percentile of each class probability over passes."""
    ci_upper: Tensor
    """(B, C) upper percentile of each class probability over passes."""
    predicted_class: Tensor
    """(B,) long, argmax of p̄."""
    confidence: Tensor
    """(B,) max of p̄."""
    predictive_entropy: Tensor
    """(B,) H(p̄), total uncertainty."""
    expected_entropy: Tensor
    """(B,) mean_t H(p_t), aleatoric uncertainty."""
    mutual_information: Tensor
    """(B,) H(p̄) - mean_t H(p_t), epistemic uncertainty."""
    variation_ratio: Tensor
    """(B,) 1 - f_m / N, disagreement with the modal vote."""


def classification_stats(probs: Tensor, ci_level: float) -> ClassificationStats:
    """Compute every classification statistic. probs: (N, B, C) with N >= 1; 0 < ci_level < 1."""
    if probs.dim() != 3 or probs.shape[0] < 1:
        raise ValueError(
            f"probs must be (N, B, C) with N >= 1 passes, got shape {tuple(probs.shape)}"
        )
    ci_lower, ci_upper = percentile_interval(probs, ci_level)
    mean = mean_probabilities(probs)
    total = entropy(mean)
    aleatoric = expected_entropy(probs)
    return ClassificationStats(
        mean=mean,
        std=class_std(probs),
        ci_lower=ci_lower,
        ci_upper=ci_upper,
        predicted_class=mean.argmax(dim=-1),
        confidence=mean.max(dim=-1).values,
        predictive_entropy=total,
        expected_entropy=aleatoric,
        mutual_information=(total - aleatoric).clamp_min(0.0),
        variation_ratio=variation_ratio(probs),
    )
