"""Adaptive N: keep sampling until the Monte Carlo standard error of the mean is small enough."""

from __future__ import annotations

import math

from torch import Tensor

ADAPTIVE_FIRST_SAMPLES = 32
"""Samples drawn before the first standard-error estimate (a multiple of the row alignment)."""
_GROWTH_MARGIN = 1.2


def mc_standard_error(values: Tensor) -> float:
    """Largest MC standard error of the mean over every row and output.

    values: (N, B, ...) per-pass quantities whose mean is returned (probabilities, regression
    means). SE = s / sqrt(N) with s the unbiased sample std over passes; 0 when N == 1 is not
    enough to estimate it, so N = 1 gives infinity.
    """
    n = values.shape[0]
    if n < 2:
        return math.inf
    return float((values.double().std(dim=0, correction=1) / math.sqrt(n)).max())


def next_sample_count(n: int, standard_error: float, tolerance: float, cap: int) -> int:
    """Total samples to have after the next round, or ``n`` when done.

    Done when the standard error is within ``tolerance`` or ``n`` reached ``cap``. Otherwise the
    SE ~ 1/sqrt(N) law predicts the N needed, ``n * (se / tol)^2``; ask for 20% more, at least
    doubling, rounded up to a multiple of 16 samples (row alignment), and never beyond ``cap``.
    """
    if standard_error <= tolerance or n >= cap:
        return n
    ratio = standard_error / tolerance
    # A tolerance near the smallest float makes the ratio overflow: sample up to the cap.
    if not ratio * ratio * n * _GROWTH_MARGIN < cap:
        return cap
    predicted = n * ratio * ratio * _GROWTH_MARGIN
    wanted = max(predicted, 2 * n)
    aligned = math.ceil(wanted / 16 - 1e-9) * 16
    return min(cap, aligned)
