"""Acquisition scores for active learning: which rows to label next.

Every score takes the Monte Carlo passes of a request, `probs: (N, B, C)` class probabilities
(N passes, B rows, C classes) or `means: (N, B, D)` regression means, and returns `(B,)`: the
larger, the more a label for that row is expected to teach the model. Entropies are in nats.
BatchBALD, which scores a batch jointly, lives in :mod:`app.engine.batchbald`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from app.engine.stats.classification import (
    mean_probabilities,
    mutual_information,
    predictive_entropy,
    variation_ratio,
)

Strategy = Literal[
    "bald", "batchbald", "entropy", "variation_ratio", "margin", "least_confidence", "std"
]
CLASSIFICATION_STRATEGIES: tuple[Strategy, ...] = (
    "bald",
    "batchbald",
    "entropy",
    "variation_ratio",
    "margin",
    "least_confidence",
)
REGRESSION_STRATEGIES: tuple[Strategy, ...] = ("std",)
STRATEGIES: tuple[Strategy, ...] = CLASSIFICATION_STRATEGIES + REGRESSION_STRATEGIES


def bald(probs: Tensor) -> Tensor:
    """BALD (Houlsby et al. 2011): mutual information between the label and the weights,
    H(p̄) - (1/N) Σ_t H(p_t); the same numbers as predict's ``mutual_information``.
    (N, B, C) -> (B,)."""
    return mutual_information(probs)


def max_entropy(probs: Tensor) -> Tensor:
    """Predictive entropy H(p̄), total uncertainty. (N, B, C) -> (B,)."""
    return predictive_entropy(probs)


def margin(probs: Tensor) -> Tensor:
    """1 - (p̄_(1) - p̄_(2)): one minus the gap between the two most likely classes of p̄,
    so a near tie scores close to 1. (N, B, C) -> (B,), C >= 2."""
    top = mean_probabilities(probs).topk(2, dim=-1).values
    return 1.0 - (top[..., 0] - top[..., 1])


def least_confidence(probs: Tensor) -> Tensor:
    """1 - max_c p̄_c. (N, B, C) -> (B,)."""
    return 1.0 - mean_probabilities(probs).max(dim=-1).values


def predictive_std(means: Tensor, noise_variance: float | Tensor) -> Tensor:
    """Largest predictive std over outputs, max_d sqrt(Var_t ŷ_tbd + σ²_bd), the ``std`` that
    predict returns. means: (N, B, D); noise_variance: a float 1/tau or (N, B, D) predicted
    variances (their mean over passes is used). -> (B,)."""
    epistemic = means.var(dim=0, correction=0)
    aleatoric = (
        noise_variance.mean(dim=0)
        if isinstance(noise_variance, Tensor)
        else torch.full_like(epistemic, noise_variance)
    )
    return (epistemic + aleatoric).sqrt().max(dim=-1).values


def classification_score(strategy: Strategy, probs: Tensor) -> Tensor:
    """The per-row score of a classification strategy (``batchbald`` ranks rows by ``bald``
    before its joint selection). probs: (N, B, C) -> (B,)."""
    if strategy in ("bald", "batchbald"):
        return bald(probs)
    if strategy == "entropy":
        return max_entropy(probs)
    if strategy == "variation_ratio":
        return variation_ratio(probs)
    if strategy == "margin":
        return margin(probs)
    if strategy == "least_confidence":
        return least_confidence(probs)
    raise ValueError(f"strategy '{strategy}' does not apply to classification")
