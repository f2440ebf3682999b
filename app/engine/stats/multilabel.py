"""Uncertainty statistics for multi-label classification over Monte Carlo passes.

Every function takes `probs: (N, B, ..., K)`: N passes, B rows, K labels, each entry an
independent Bernoulli probability p (a sigmoid per label, never a softmax across labels).
Entropies are binary, in nats, one per label: H(p) = -p ln p - (1 - p) ln(1 - p), at most ln 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from app.engine.stats.intervals import percentile_interval


def binary_entropy(p: Tensor) -> Tensor:
    """H(p) = -p ln p - (1 - p) ln(1 - p), elementwise, 0 ln 0 = 0. (...) -> (...)."""
    p = p.clamp(0.0, 1.0)
    terms: Tensor = torch.special.entr(p) + torch.special.entr(1.0 - p)
    return terms


def label_predictive_entropy(probs: Tensor) -> Tensor:
    """Total uncertainty per label H(p̄). (N, B, ..., K) -> (B, ..., K)."""
    return binary_entropy(probs.mean(dim=0))


def label_expected_entropy(probs: Tensor) -> Tensor:
    """Aleatoric uncertainty per label (1/N) Σ_t H(p_t). (N, B, ..., K) -> (B, ..., K)."""
    return binary_entropy(probs).mean(dim=0)


def label_mutual_information(probs: Tensor) -> Tensor:
    """Epistemic uncertainty per label H(p̄) - (1/N) Σ_t H(p_t), clamped at 0 (Jensen; the
    clamp removes rounding). (N, B, ..., K) -> (B, ..., K); two passes at 0 and 1 give ln 2."""
    return (label_predictive_entropy(probs) - label_expected_entropy(probs)).clamp_min(0.0)


@dataclass(frozen=True)
class MultilabelStats:
    """All multi-label statistics for one batch; every field is (B, K)."""

    mean: Tensor
    """Mean probability p̄ of each label."""
    std: Tensor
    """Population std of each label's probability over passes."""
    ci_lower: Tensor
    ci_upper: Tensor
    """Percentile interval of each label's probability over passes."""
    predicted: Tensor
    """bool: p̄ >= threshold."""
    predictive_entropy: Tensor
    """Binary H(p̄) per label."""
    expected_entropy: Tensor
    """mean_t H(p_t) per label."""
    mutual_information: Tensor
    """H(p̄) - mean_t H(p_t) per label."""


def multilabel_stats(probs: Tensor, ci_level: float, threshold: float) -> MultilabelStats:
    """Every multi-label statistic. probs: (N, B, K) with N >= 1; 0 < ci_level < 1."""
    if probs.dim() != 3 or probs.shape[0] < 1:
        raise ValueError(
            f"probs must be (N, B, K) with N >= 1 passes, got shape {tuple(probs.shape)}"
        )
    lower, upper = percentile_interval(probs, ci_level)
    mean = probs.mean(dim=0)
    total = binary_entropy(mean)
    aleatoric = label_expected_entropy(probs)
    return MultilabelStats(
        mean=mean,
        std=probs.std(dim=0, correction=0),
        ci_lower=lower,
        ci_upper=upper,
        predicted=mean >= threshold,
        predictive_entropy=total,
        expected_entropy=aleatoric,
        mutual_information=(total - aleatoric).clamp_min(0.0),
    )
