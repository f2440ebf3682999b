"""Classification metrics of a predictive distribution against labels.

`mean_probs: (B, C)` is each row's predictive distribution p̄ (the mean of the MC passes, or a
single pass), `targets: (B,)` the true class indices (long). `confidence: (B,)` is max_c p̄_c and
`correct: (B,)` (bool) says whether argmax_c p̄_c is the target. `uncertainty: (B,)` is any score
where lower means more certain (predictive entropy, mutual information, 1 - confidence, ...).
Every metric returns a 0-dim float64 tensor unless stated otherwise; those with a ``reduction``
return the per-row values (B,) with ``reduction="none"`` (feedback scores rows one by one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from app.engine.evaluation.reduction import Reduction, reduce_rows

ECE_BINS = 15
_NLL_FLOOR = 1e-12


def _check_rows(mean_probs: Tensor, targets: Tensor) -> None:
    if mean_probs.dim() != 2 or targets.shape != mean_probs.shape[:1]:
        raise ValueError(
            f"mean_probs must be (B, C) and targets (B,), got {tuple(mean_probs.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if mean_probs.shape[0] < 1:
        raise ValueError("metrics need at least one row")


def accuracy(mean_probs: Tensor, targets: Tensor) -> Tensor:
    """Share of rows with argmax_c p̄_c = y. (B, C), (B,) -> ()."""
    _check_rows(mean_probs, targets)
    return (mean_probs.argmax(dim=-1) == targets).double().mean()


def negative_log_likelihood(
    mean_probs: Tensor, targets: Tensor, reduction: Reduction = "mean"
) -> Tensor:
    """Mean over rows of -ln p̄_y (nats). (B, C), (B,) -> () or (B,) with "none".

    p̄_y is floored at 1e-12, so a single zero probability gives 27.6 instead of infinity.
    """
    _check_rows(mean_probs, targets)
    p_true = mean_probs.double().gather(1, targets.long().unsqueeze(1)).squeeze(1)
    return reduce_rows(-p_true.clamp_min(_NLL_FLOOR).log(), reduction)


def brier_score(mean_probs: Tensor, targets: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Multi-class Brier score (1/B) Σ_b Σ_c (p̄_bc - 1[c = y_b])², in [0, 2].
    (B, C), (B,) -> () or (B,) with "none"."""
    _check_rows(mean_probs, targets)
    one_hot = torch.nn.functional.one_hot(targets.long(), mean_probs.shape[1]).double()
    return reduce_rows(((mean_probs.double() - one_hot) ** 2).sum(dim=1), reduction)


def set_coverage(sets: Tensor, targets: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Share of rows whose label is in their prediction set. sets (B, C) bool, targets (B,)
    -> () or (B,) bool with "none"."""
    hits = sets.gather(1, targets.long().unsqueeze(1)).squeeze(1)
    return hits if reduction == "none" else hits.double().mean()


@dataclass(frozen=True)
class ReliabilityBins:
    """Rows grouped by confidence into equal-width bins over [0, 1]."""

    edges: Tensor
    """(n_bins + 1,) bin edges 0, 1/n, ..., 1."""
    counts: Tensor
    """(n_bins,) long, rows per bin."""
    confidence: Tensor
    """(n_bins,) mean confidence of each bin's rows; NaN for an empty bin."""
    accuracy: Tensor
    """(n_bins,) share of correct rows in each bin; NaN for an empty bin."""


def reliability_bins(
    confidence: Tensor, correct: Tensor, n_bins: int = ECE_BINS
) -> ReliabilityBins:
    """Bin rows by confidence: bin i holds (i/n, (i+1)/n], and bin 0 also holds confidence 0.

    confidence: (B,) in [0, 1], correct: (B,) bool -> ReliabilityBins with n_bins entries.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf = confidence.double()
    index = (torch.ceil(conf * n_bins).long() - 1).clamp(0, n_bins - 1)
    counts = torch.bincount(index, minlength=n_bins)
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, conf)
    hits = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, correct.double())
    denominator = counts.double()
    return ReliabilityBins(
        edges=torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64),
        counts=counts,
        confidence=conf_sum / denominator,
        accuracy=hits / denominator,
    )


def expected_calibration_error(
    confidence: Tensor, correct: Tensor, n_bins: int = ECE_BINS
) -> Tensor:
    """ECE = Σ_i (n_i / B) |acc_i - conf_i| over the equal-width bins of `reliability_bins`.

    confidence: (B,), correct: (B,) bool -> (). Empty bins contribute nothing (Guo et al. 2017).
    """
    bins = reliability_bins(confidence, correct, n_bins)
    filled = bins.counts > 0
    gaps = (bins.accuracy[filled] - bins.confidence[filled]).abs()
    weights = bins.counts[filled].double() / confidence.shape[0]
    return (weights * gaps).sum()


def risk_coverage_curve(uncertainty: Tensor, correct: Tensor) -> tuple[Tensor, Tensor]:
    """Selective risk when keeping the k most certain rows, for k = 1..B.

    uncertainty: (B,), correct: (B,) bool -> (coverage (B,) = k / B, risk (B,) = errors among the
    kept rows / k). A selector cannot tell tied rows apart, so inside a group of equal
    uncertainty the group's errors are spread evenly over its rows: the risk is the expected
    risk over every order of the tied rows, and does not depend on the input order.
    """
    if uncertainty.dim() != 1 or correct.shape != uncertainty.shape or uncertainty.numel() < 1:
        raise ValueError("uncertainty and correct must be (B,) with B >= 1")
    order = torch.argsort(uncertainty, stable=True)
    _, group, sizes = torch.unique_consecutive(
        uncertainty[order], return_inverse=True, return_counts=True
    )
    errors = (~correct[order].bool()).double()
    group_errors = torch.zeros(sizes.shape[0], dtype=torch.float64).index_add_(0, group, errors)
    expected_errors = (group_errors / sizes.double())[group]
    kept = torch.arange(1, uncertainty.shape[0] + 1, dtype=torch.float64)
    return kept / uncertainty.shape[0], expected_errors.cumsum(0) / kept


def _kept_rows(coverage: float, rows: int) -> int:
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage!r}")
    # The tolerance stops 0.9 * 10 = 9.000000000000002 from rounding up to 10 rows.
    return max(1, math.ceil(coverage * rows - 1e-9))


def selective_risk(uncertainty: Tensor, correct: Tensor, coverage: float) -> Tensor:
    """Risk (error share) among the ceil(coverage · B) most certain rows (at least one).

    uncertainty: (B,), correct: (B,) bool, 0 < coverage <= 1 -> (). Ties as in
    `risk_coverage_curve`. Selective accuracy is 1 - this.
    """
    _, risk = risk_coverage_curve(uncertainty, correct)
    return risk[_kept_rows(coverage, uncertainty.shape[0]) - 1]


def area_under_risk_coverage(uncertainty: Tensor, correct: Tensor) -> Tensor:
    """AURC = (1/B) Σ_{k=1..B} risk_k, the mean of `risk_coverage_curve` (Geifman et al. 2019).

    uncertainty: (B,), correct: (B,) bool -> (). Lower is better; a perfect ranking of B rows
    with E errors gives Σ_{k > B-E} (k - B + E) / (k B).
    """
    _, risk = risk_coverage_curve(uncertainty, correct)
    return risk.mean()
