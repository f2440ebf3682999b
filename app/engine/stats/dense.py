"""Classification statistics per position of a dense output: tokens, pixels.

``probs: (N, B, *S, C)``: N passes, B rows, any position axes S (a sequence L, an image H, W),
C classes last. Each position is one classification; its statistics are those of
:mod:`app.engine.stats.classification` at that position, shaped (B, *S).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from app.engine.stats.classification import entropy


@dataclass(frozen=True)
class DenseClassificationStats:
    """Per-position statistics: ``mean`` is (B, *S, C), the others (B, *S)."""

    mean: Tensor
    predicted_class: Tensor
    """long, argmax of p̄ (first index on ties)."""
    confidence: Tensor
    predictive_entropy: Tensor
    expected_entropy: Tensor
    mutual_information: Tensor


def dense_classification_stats(probs: Tensor) -> DenseClassificationStats:
    """H(p̄), mean_t H(p_t), their difference (clamped at 0), argmax and max of p̄ at every
    position. probs: (N, B, *S, C) with N >= 1."""
    if probs.dim() < 3 or probs.shape[0] < 1:
        raise ValueError(f"probs must be (N, B, ..., C) with N >= 1, got {tuple(probs.shape)}")
    mean = probs.mean(dim=0)
    total = entropy(mean)
    aleatoric = entropy(probs).mean(dim=0)
    top = mean.max(dim=-1)
    return DenseClassificationStats(
        mean=mean,
        predicted_class=top.indices,
        confidence=top.values,
        predictive_entropy=total,
        expected_entropy=aleatoric,
        mutual_information=(total - aleatoric).clamp_min(0.0),
    )
