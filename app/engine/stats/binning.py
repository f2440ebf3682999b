"""Linear binning: many equal-weight points as weights on a uniform grid.

A Gaussian mixture with one noise σ and N passes has N components; binned on a grid of step
h = σ / ``BINS_PER_STD`` it has one component per grid point, G of them, however large N is.
Each point splits its unit weight between the two grid points around it, which keeps the
points' sum and mean exactly and interpolates any smooth g(point) linearly: the error of
Σ_t g(x_t) is at most N h² max|g''| / 8.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

BINS_PER_STD = 64
"""Grid steps per noise standard deviation."""


@dataclass(frozen=True)
class Bins:
    """Points of M columns on grids: column m's grid point g sits at ``lo[m] + g * step``."""

    lo: Tensor
    """(M,) float64: each column's smallest point, its grid's origin."""
    step: float
    weights: Tensor
    """(M, G) float64: each grid point's share of the points (a column's weights sum to N)."""

    def centers(self) -> Tensor:
        """(M, G) the grid points' positions."""
        grid = torch.arange(self.weights.shape[1], dtype=torch.float64) * self.step
        return self.lo[:, None] + grid[None, :]


def grid_sizes(columns: Tensor, step: float) -> Tensor:
    """Grid points each column of ``columns`` (N, M) needs at ``step``: (M,) long."""
    span = columns.amax(dim=0) - columns.amin(dim=0)
    return (span / step).floor().long() + 2


def linear_bins(columns: Tensor, step: float, size: int) -> Bins:
    """Bin the points of each column of ``columns`` (N, M) on a grid of ``size`` points (at
    least ``grid_sizes(columns, step).max()``) and spacing ``step``."""
    lo = columns.amin(dim=0)
    position = columns.sub(lo).mul_(1.0 / step)
    index = position.floor().clamp_(0, size - 2)
    upper = position.sub_(index)
    m = columns.shape[1]
    flat = index.long().add_(torch.arange(m) * size).reshape(-1)
    weights = torch.bincount(flat, upper.neg().add_(1.0).reshape(-1), minlength=m * size)
    weights += torch.bincount(flat.add_(1), upper.reshape(-1), minlength=m * size + 1)[: m * size]
    return Bins(lo, step, weights.view(m, size))
