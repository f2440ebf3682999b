"""Separating in-distribution rows from out-of-distribution (OOD) rows by an uncertainty score.

`in_scores: (B_in,)` and `out_scores: (B_out,)` are one score per row where higher means "more
likely OOD" (mutual information, predictive entropy, 1 - confidence, ...).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _check_scores(in_scores: Tensor, out_scores: Tensor) -> None:
    if in_scores.dim() != 1 or out_scores.dim() != 1:
        raise ValueError("scores must be 1-D tensors")
    if in_scores.numel() < 1 or out_scores.numel() < 1:
        raise ValueError("AUROC needs at least one in-distribution and one OOD row")


def auroc(in_scores: Tensor, out_scores: Tensor) -> Tensor:
    """Area under the ROC curve of "OOD if score > t", ties counted as one half. -> () float64.

    The Mann-Whitney form: P(out > in) + ½ P(out = in) = (R_out - n_out (n_out + 1) / 2) /
    (n_in n_out), where R_out is the sum of the OOD rows' ranks in the pooled sample and tied
    scores share their average rank. 1 separates perfectly, 0.5 is chance.
    """
    _check_scores(in_scores, out_scores)
    pooled = torch.cat([in_scores.double(), out_scores.double()])
    _, group, sizes = torch.unique(pooled, return_inverse=True, return_counts=True)
    ends = sizes.cumsum(0).double()
    average_rank = ends - (sizes.double() - 1.0) / 2.0
    n_in, n_out = in_scores.numel(), out_scores.numel()
    rank_sum = average_rank[group][n_in:].sum()
    area: Tensor = (rank_sum - n_out * (n_out + 1) / 2.0) / (n_in * n_out)
    return area


def roc_curve(in_scores: Tensor, out_scores: Tensor) -> tuple[Tensor, Tensor]:
    """(false positive rate, true positive rate) of "OOD if score >= t" at every distinct t.

    Both (K + 1,) float64 from (0, 0) to (1, 1), thresholds in decreasing order; the
    trapezoidal area under it equals `auroc`.
    """
    _check_scores(in_scores, out_scores)
    thresholds = torch.unique(torch.cat([in_scores, out_scores]).double()).flip(0)
    sorted_in = torch.sort(in_scores.double()).values
    sorted_out = torch.sort(out_scores.double()).values
    in_below = torch.searchsorted(sorted_in, thresholds, right=False)
    out_below = torch.searchsorted(sorted_out, thresholds, right=False)
    fpr = 1.0 - in_below.double() / in_scores.numel()
    tpr = 1.0 - out_below.double() / out_scores.numel()
    zero = torch.zeros(1, dtype=torch.float64)
    return torch.cat([zero, fpr]), torch.cat([zero, tpr])


def threshold_for_share(in_scores: Tensor, keep: float) -> Tensor:
    """Smallest threshold t with share(in_scores <= t) >= keep: the k-th smallest score,
    k = ceil(keep · B_in). (B_in,) -> ().

    Rows scoring above t are flagged; without ties exactly k of the B_in rows are kept.
    """
    if in_scores.dim() != 1 or in_scores.numel() < 1:
        raise ValueError("in_scores must be (B,) with B >= 1")
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep!r}")
    # The tolerance stops 0.95 * 20 = 19.000000000000004 from rounding up to 20 rows.
    k = max(1, math.ceil(keep * in_scores.numel() - 1e-9))
    return torch.sort(in_scores.double()).values[k - 1]


def kept_share(scores: Tensor, threshold: float | Tensor) -> Tensor:
    """Share of rows with score <= threshold (not flagged). (B,) -> () float64."""
    return (scores.double() <= threshold).double().mean()
