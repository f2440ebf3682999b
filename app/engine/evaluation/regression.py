"""Regression metrics of the MC predictive distribution against targets.

`preds: (N, B, D)` holds the per-pass means ŷ_t, `target: (B, D)` the observed values. The
aleatoric noise `noise_var` is one float σ² = 1/τ or a (N, B, D) tensor of per-pass variances
σ_t². The predictive distribution of each element is the mixture (1/N) Σ_t N(ŷ_t, σ_t²).
Metrics return 0-dim float64 tensors (means over rows) unless stated otherwise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from app.engine.stats.regression import mc_log_likelihood

_CRPS_BLOCK_ELEMENTS = 1 << 22


def rmse(mean: Tensor, target: Tensor) -> Tensor:
    """Root mean squared error sqrt(mean over all elements of (ȳ - y)²). (B, D), (B, D) -> ()."""
    if mean.shape != target.shape:
        raise ValueError(f"mean {tuple(mean.shape)} and target {tuple(target.shape)} differ")
    return ((mean.double() - target.double()) ** 2).mean().sqrt()


def mc_test_log_likelihood(preds: Tensor, noise_var: float | Tensor, target: Tensor) -> Tensor:
    """Mean over rows of the MC test log-likelihood of Gal & Ghahramani (2016).

    (N, B, D), noise, (B, D) -> (): mean_b [logsumexp_t Σ_d log N(y_bd | ŷ_tbd, σ²_tbd) - log N]
    (see `app.engine.stats.mc_log_likelihood`). Higher is better.
    """
    if isinstance(noise_var, Tensor):
        noise_var = noise_var.double()
    return mc_log_likelihood(preds.double(), noise_var, target.double()).mean()


def interval_coverage(lower: Tensor, upper: Tensor, target: Tensor) -> Tensor:
    """Share of target elements inside their closed interval [lower, upper]. (B, D) x 3 -> ()."""
    if not lower.shape == upper.shape == target.shape:
        raise ValueError("lower, upper and target must have the same shape")
    return ((target >= lower) & (target <= upper)).double().mean()


def gaussian_expected_abs(mean: Tensor, variance: Tensor) -> Tensor:
    """E|X| for X ~ N(m, s²): s·2φ(m/s) + m·(2Φ(m/s) - 1), and |m| where s = 0. Elementwise."""
    std = variance.clamp_min(0.0).sqrt()
    degenerate = std == 0
    z = mean / torch.where(degenerate, torch.ones_like(std), std)
    density = torch.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi)
    smooth = 2.0 * std * density + mean * (2.0 * torch.special.ndtr(z) - 1.0)
    return torch.where(degenerate, mean.abs(), smooth)


def mixture_crps(preds: Tensor, noise_var: float | Tensor, target: Tensor) -> Tensor:
    """CRPS of the mixture (1/N) Σ_t N(ŷ_t, σ_t²) at y, per element. (N, B, D) -> (B, D).

    CRPS(F, y) = E|X - y| - ½ E|X - X'| with X, X' ~ F independent (Gneiting & Raftery 2007).
    For the mixture both terms are Gaussian mean absolute values (`gaussian_expected_abs`):
    (1/N) Σ_t A(y - ŷ_t, σ_t²) - (1/(2N²)) Σ_t Σ_s A(ŷ_t - ŷ_s, σ_t² + σ_s²). Lower is better;
    with N = 1 and σ = 0 it is |ŷ - y|. The N² pair term is summed in blocks of passes so memory
    stays bounded for large N · B.
    """
    mu = preds.double()
    var = torch.as_tensor(noise_var, dtype=torch.float64).expand_as(mu)
    n = mu.shape[0]
    first = gaussian_expected_abs(target.double() - mu, var).mean(dim=0)
    block = max(1, _CRPS_BLOCK_ELEMENTS // max(1, mu[0].numel() * n))
    pairs = torch.zeros_like(first)
    for start in range(0, n, block):
        mu_t, var_t = mu[start : start + block, None], var[start : start + block, None]
        pairs += gaussian_expected_abs(mu_t - mu[None], var_t + var[None]).sum(dim=(0, 1))
    return first - pairs / (2.0 * n * n)
