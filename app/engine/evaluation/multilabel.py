"""Metrics of multi-label predictions against label sets.

``mean_probs: (B, K)`` are the mean probabilities p̄ of K independent labels, ``targets: (B, K)``
their 0/1 truth. Each metric is per label (a list of K), the macro F1 their mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from app.engine.evaluation.classification import expected_calibration_error


def label_brier(mean_probs: Tensor, targets: Tensor) -> Tensor:
    """Brier score of each label (1/B) Σ_b (p̄_bk - y_bk)², in [0, 1]. (B, K) -> (K,)."""
    return ((mean_probs.double() - targets.double()) ** 2).mean(dim=0)


def label_ece(mean_probs: Tensor, targets: Tensor) -> Tensor:
    """ECE of each label's probability of being on: rows binned by p̄_k, each bin's share of
    rows with the label against its mean p̄_k. (B, K) -> (K,) float64."""
    return torch.stack(
        [
            expected_calibration_error(mean_probs[:, k], targets[:, k].bool())
            for k in range(mean_probs.shape[1])
        ]
    )


def label_f1(predicted: Tensor, targets: Tensor) -> Tensor:
    """F1 of each label 2TP / (2TP + FP + FN); 0 for a label neither present nor predicted
    (scikit-learn's ``zero_division=0``). predicted, targets: (B, K) bool -> (K,) float64."""
    hit = predicted.bool()
    truth = targets.bool()
    tp = (hit & truth).sum(dim=0).double()
    wrong = (hit ^ truth).sum(dim=0).double()
    denominator = 2 * tp + wrong
    return 2 * tp / denominator.clamp_min(1.0)


@dataclass(frozen=True)
class MultilabelReport:
    """Metrics of a labelled multi-label set: lists have one value per label."""

    threshold: float
    brier: list[float]
    ece: list[float]
    f1: list[float]
    macro_f1: float
    """Mean of the per-label F1 at ``threshold``."""
    exact_match: float
    """Share of rows whose predicted label set is exactly the true one."""


def multilabel_report(probs: Tensor, targets: Tensor, threshold: float) -> MultilabelReport:
    """Score passes ``probs: (N, B, K)`` against ``targets: (B, K)`` 0/1."""
    mean = probs.double().mean(dim=0)
    predicted = mean >= threshold
    f1 = label_f1(predicted, targets)
    return MultilabelReport(
        threshold=threshold,
        brier=label_brier(mean, targets).tolist(),
        ece=label_ece(mean, targets).tolist(),
        f1=f1.tolist(),
        macro_f1=float(f1.mean()),
        exact_match=float((predicted == targets.bool()).all(dim=1).double().mean()),
    )
