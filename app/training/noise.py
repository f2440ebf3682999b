"""Fitting the aleatoric noise on a validation split, and the held-out check of the result.

The noise of a homoscedastic regression model is one variance σ² (the card's ``tau`` is 1/σ²).
Left at a guess it makes the served intervals useless (far too wide or too narrow), so
``mcdrop train`` chooses it by maximising the MC test log-likelihood of held-out rows
(Gal & Ghahramani 2016): a 1-D search over log σ², cheap once the passes are drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from app.engine.stats import mc_log_likelihood, predictive_interval

CHECK_LEVEL = 0.95
"""Level of the predictive interval whose held-out coverage is reported."""
_GRID_POINTS = 61
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_REFINE_STEPS = 40


def _mean_log_likelihood(preds: Tensor, log_variance: float, target: Tensor) -> float:
    return float(mc_log_likelihood(preds, math.exp(log_variance), target).mean())


def fit_noise_variance(preds: Tensor, target: Tensor) -> float:
    """σ² maximising the mean MC log-likelihood of `target` under (1/N) Σ_t N(ŷ_t, σ²).

    preds: (N, B, D) per-pass means, target: (B, D), both in target units -> σ² > 0.
    A 61-point grid over log σ² from 10⁻⁸ to 10² times the residual scale brackets the
    maximum, which golden-section search then refines. With N = 1 the answer is the closed
    form σ² = mean (ŷ - y)².
    """
    preds, target = preds.double(), target.double()
    scale = float(((preds.mean(dim=0) - target) ** 2).mean()) + float(target.var()) * 1e-12
    scale = max(scale, 1e-300)
    grid = torch.linspace(
        math.log(scale) - 8 * math.log(10), math.log(scale) + 2 * math.log(10), _GRID_POINTS
    ).tolist()
    scores = [_mean_log_likelihood(preds, s, target) for s in grid]
    best = max(range(len(grid)), key=scores.__getitem__)
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    for _ in range(_REFINE_STEPS):
        left = high - _GOLDEN * (high - low)
        right = low + _GOLDEN * (high - low)
        if _mean_log_likelihood(preds, left, target) >= _mean_log_likelihood(preds, right, target):
            high = right
        else:
            low = left
    return math.exp(0.5 * (low + high))


@dataclass(frozen=True)
class HeldOutCheck:
    """How the chosen model does on the validation rows (target units)."""

    rows: int
    rmse: float
    log_likelihood: float
    """Mean MC test log-likelihood per row."""
    pi_coverage: float
    """Share of rows whose targets lie in the 95% predictive interval (all outputs)."""


def held_out_check(preds: Tensor, noise_var: float | Tensor, target: Tensor) -> HeldOutCheck:
    """RMSE, mean MC log-likelihood and 95% PI coverage. preds (N, B, D), noise σ² (a float or
    (N, B, D)), target (B, D)."""
    preds, target = preds.double(), target.double()
    noise = noise_var.double() if isinstance(noise_var, Tensor) else noise_var
    lower, upper = predictive_interval(preds, noise, CHECK_LEVEL)
    inside = ((target >= lower) & (target <= upper)).all(dim=1)
    return HeldOutCheck(
        rows=int(target.shape[0]),
        rmse=float(((preds.mean(dim=0) - target) ** 2).mean().sqrt()),
        log_likelihood=float(mc_log_likelihood(preds, noise, target).mean()),
        pi_coverage=float(inside.double().mean()),
    )
