"""Summaries over repeated random train/test splits (the calibration-defaults benchmark).

The protocol of the MC-dropout literature (Hernández-Lobato & Adams 2015; Gal & Ghahramani
2016): K seeded random train/test splits per data set, each metric reported as its mean over
the splits with the standard error s / √K of that mean (s the sample standard deviation,
ddof 1). These helpers are pure: they take per-split numbers and return the summaries.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Estimate:
    """A mean over splits and its standard error (0 for a single split)."""

    mean: float
    se: float

    def text(self, digits: int = 3) -> str:
        """'mean ± se' with `digits` decimals."""
        return f"{self.mean:.{digits}f} ± {self.se:.{digits}f}"


def mean_se(values: Sequence[float]) -> Estimate:
    """Mean of `values` and its standard error s / √K (s with ddof 1; 0 when K = 1)."""
    if not values:
        raise ValueError("need at least one value")
    if len(values) == 1:
        return Estimate(float(values[0]), 0.0)
    return Estimate(statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values)))


def pooled_coverage(covered: Sequence[int], rows: Sequence[int]) -> float:
    """Share of all test rows of all splits inside their interval: Σ covered / Σ rows."""
    if len(covered) != len(rows) or not rows or sum(rows) <= 0:
        raise ValueError("need as many covered counts as row counts, and some rows")
    if any(not 0 <= c <= r for c, r in zip(covered, rows, strict=True)):
        raise ValueError("a split cannot cover more rows than it has, or fewer than none")
    return sum(covered) / sum(rows)


def best_fixed_point(test_lls: Mapping[str, Sequence[float]]) -> str:
    """The ONE grid point (key) with the best mean test log-likelihood over the splits.

    `test_lls` maps a point to its per-split test log-likelihoods, every point over the same
    splits. A point fixed for all splits, not a per-split oracle; ties go to the first key.
    """
    if not test_lls:
        raise ValueError("the grid is empty")
    counts = {len(values) for values in test_lls.values()}
    if len(counts) != 1 or 0 in counts:
        raise ValueError("every grid point needs a score on the same, non-zero number of splits")
    return max(test_lls, key=lambda point: statistics.fmean(test_lls[point]))


def paired_gap(best: Sequence[float], default: Sequence[float]) -> Estimate:
    """Mean of best_k - default_k over the splits, with the standard error of that paired
    difference (the splits are shared, so their difficulty cancels)."""
    if len(best) != len(default):
        raise ValueError("the two runs need a score on the same splits")
    return mean_se([b - d for b, d in zip(best, default, strict=True)])
