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

from app.engine.evaluation.reduction import Reduction, reduce_rows
from app.engine.stats.binning import BINS_PER_STD, grid_sizes, linear_bins
from app.engine.stats.regression import mc_log_likelihood

_CRPS_BLOCK_ELEMENTS = 1 << 22
_EXACT_PASSES = 256
"""Up to this many passes the exact O(N²) pair sum of the CRPS is cheap enough."""
_MAX_BINS = 1 << 15
"""Widest binned grid; passes spread wider than this many steps take the exact sum."""


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


def interval_coverage(
    lower: Tensor, upper: Tensor, target: Tensor, reduction: Reduction = "mean"
) -> Tensor:
    """Share of target elements inside their closed interval [lower, upper]. (B, D) x 3 -> (),
    or with "none" (B, D) bool: each element inside its interval (the same comparison, so the
    mean of the "none" form is the "mean" form)."""
    if not lower.shape == upper.shape == target.shape:
        raise ValueError("lower, upper and target must have the same shape")
    hits = (target >= lower) & (target <= upper)
    return hits if reduction == "none" else hits.double().mean()


def gaussian_log_likelihood(
    mean: Tensor, variance: Tensor, target: Tensor, reduction: Reduction = "mean"
) -> Tensor:
    """Log-likelihood of the targets under the served Gaussian N(m, v), in float64:
    Σ_d log N(y_d | m_d, v_d) per row. (B, D) x 3 -> () mean over rows, or (B,) with "none".
    Every v must be > 0."""
    mean, variance, target = mean.double(), variance.double(), target.double()
    density = -0.5 * (torch.log(2.0 * math.pi * variance) + (target - mean) ** 2 / variance)
    return reduce_rows(density.sum(dim=1), reduction)


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
    For the mixture the first term is (1/N) Σ_t A(y - ŷ_t, σ_t²) with A the Gaussian mean
    absolute value (`gaussian_expected_abs`), exact in O(N); the second is
    `mixture_mean_abs_difference`. Lower is better; with N = 1 and σ = 0 it is |ŷ - y|.
    """
    mu = preds.double()
    var = torch.as_tensor(noise_var, dtype=torch.float64)
    first = gaussian_expected_abs(target.double() - mu, var.expand_as(mu)).mean(dim=0)
    return first - 0.5 * mixture_mean_abs_difference(mu, var)


def mixture_mean_abs_difference(mu: Tensor, var: Tensor) -> Tensor:
    """E|X - X'| of the mixture (1/N) Σ_t N(ŷ_t, σ_t²) per element. (N, B, D), var -> (B, D).

    Exactly (1/N²) Σ_t Σ_s A(ŷ_t - ŷ_s, σ_t² + σ_s²), an O(N²) sum, which is what runs for
    small N and for per-pass variances (a variance head). With one noise variance σ² for every
    pass (1/tau) and N > ``_EXACT_PASSES``: σ = 0 is exact in O(N log N) (sorted passes);
    otherwise the passes are linearly binned (`app.engine.stats.binning`, step h = σ / 64) and
    the pair sum becomes an FFT autocorrelation of the bin weights against the kernel A(·, 2σ²),
    O(N + G log G) for G grid points. Binning interpolates the kernel, whose second derivative
    is at most 1 / (√π σ), so the absolute error is at most h² / (4 √π σ) = 3.4e-5 σ (1.7e-5 σ
    on the CRPS, under 1e-4 of the smallest CRPS a mixture with noise σ has, 0.234 σ: a single
    Gaussian at its mean). Elements whose passes span more than ``_MAX_BINS`` grid steps take
    the exact sum.
    """
    n = mu.shape[0]
    if var.dim() > 0 and bool((var == var.flatten()[0]).all()):
        var = var.flatten()[0]
    if n <= _EXACT_PASSES or var.dim() > 0:
        return _exact_mean_abs_difference(mu, var)
    columns = mu.reshape(n, -1)
    std = math.sqrt(max(float(var), 0.0))
    if std == 0.0:
        return _sorted_mean_abs_difference(columns).view(mu.shape[1:])
    bins = grid_sizes(columns, std / BINS_PER_STD)
    wide = bins > _MAX_BINS
    out = torch.empty(columns.shape[1], dtype=torch.float64)
    if bool(wide.any()):
        out[wide] = _exact_mean_abs_difference(columns[:, wide], var)
    narrow = ~wide
    if bool(narrow.any()):
        out[narrow] = _binned_mean_abs_difference(columns[:, narrow], std, int(bins[narrow].max()))
    return out.view(mu.shape[1:])


def _exact_mean_abs_difference(mu: Tensor, var: Tensor) -> Tensor:
    """(1/N²) Σ_t Σ_s A(ŷ_t - ŷ_s, σ_t² + σ_s²), summed in blocks of passes so memory stays
    bounded for large N · B. (N, *S), var () or (N, *S) -> S."""
    var = var.expand_as(mu)
    n = mu.shape[0]
    block = max(1, _CRPS_BLOCK_ELEMENTS // max(1, mu[0].numel() * n))
    pairs = torch.zeros(mu.shape[1:], dtype=torch.float64)
    for start in range(0, n, block):
        mu_t, var_t = mu[start : start + block, None], var[start : start + block, None]
        pairs += gaussian_expected_abs(mu_t - mu[None], var_t + var[None]).sum(dim=(0, 1))
    return pairs / (n * n)


def _sorted_mean_abs_difference(columns: Tensor) -> Tensor:
    """(1/N²) Σ_t Σ_s |x_t - x_s| per column, exactly: with x sorted ascending the sum is
    2 Σ_i (2i - N + 1) x_(i). (N, M) -> (M,)."""
    n = columns.shape[0]
    ordered = columns.sort(dim=0).values
    weights = torch.arange(n, dtype=torch.float64) * 2.0 - (n - 1)
    return 2.0 * (weights @ ordered) / (n * n)


def _binned_mean_abs_difference(columns: Tensor, std: float, bins: int) -> Tensor:
    """(1/N²) Σ_t Σ_s A(x_t - x_s, 2σ²) per column from linearly binned passes. (N, M) -> (M,).

    With the passes binned (`app.engine.stats.binning`) the pair sum is Σ_k A(k h, 2σ²) R(k)
    over grid offsets k, with R the bin weights' autocorrelation (by FFT).
    """
    n, m = columns.shape
    step = std / BINS_PER_STD
    kernel = gaussian_expected_abs(
        torch.arange(bins, dtype=torch.float64) * step, torch.tensor(2.0 * std * std)
    )
    kernel[1:] *= 2.0  # offsets k and -k
    size = 1 << (2 * bins - 1).bit_length()
    out = torch.empty(m, dtype=torch.float64)
    per_block = max(1, _CRPS_BLOCK_ELEMENTS // size)
    for start in range(0, m, per_block):
        weights = linear_bins(columns[:, start : start + per_block], step, bins).weights
        spectrum = torch.fft.rfft(weights, n=size)
        auto = torch.fft.irfft(spectrum.real**2 + spectrum.imag**2, n=size)[:, :bins]
        out[start : start + per_block] = auto @ kernel
    return out / (n * n)
