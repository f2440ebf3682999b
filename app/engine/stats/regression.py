"""Uncertainty statistics for regression over Monte Carlo passes.

`preds: (N, B, D)` holds the per-pass means ŷ_t. The aleatoric noise `noise_var` is either one
float σ² = 1/τ shared by every pass and output, or a tensor (N, B, D) of per-pass variances σ_t².
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from app.engine.stats.intervals import percentile_interval, sample_quantile

_BRACKET_SIGMAS = 10.0
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def predictive_mean(preds: Tensor) -> Tensor:
    """Predictive mean (1/N) Σ_t ŷ_t. preds: (N, B, D) -> (B, D)."""
    return preds.mean(dim=0)


def epistemic_variance(preds: Tensor) -> Tensor:
    """Model uncertainty (1/N) Σ_t (ŷ_t - ȳ)², population form. (N, B, D) -> (B, D)."""
    return preds.var(dim=0, correction=0)


def _per_pass_variance(noise_var: float | Tensor, like: Tensor) -> Tensor:
    """σ_t² as a tensor broadcastable to like: (N, B, D); a float becomes a 0-dim tensor."""
    if isinstance(noise_var, Tensor):
        if noise_var.shape != like.shape:
            raise ValueError(
                f"noise_var tensor must match preds shape {tuple(like.shape)}, "
                f"got {tuple(noise_var.shape)}"
            )
        return noise_var
    if noise_var < 0.0:
        raise ValueError(f"noise_var must be >= 0, got {noise_var!r}")
    return torch.tensor(noise_var, dtype=like.dtype, device=like.device)


def aleatoric_variance(noise_var: float | Tensor, like: Tensor) -> Tensor:
    """Data noise (1/N) Σ_t σ_t². like: preds (N, B, D) -> (B, D); a float is broadcast."""
    per_pass = _per_pass_variance(noise_var, like)
    if per_pass.dim() == 0:
        return per_pass.expand(like.shape[1:]).clone()
    return per_pass.mean(dim=0)


def _mixture_cdf_and_pdf(
    x: Tensor, means: Tensor, stds: Tensor, smooth: Tensor | None
) -> tuple[Tensor, Tensor]:
    """F(x) = (1/N) Σ_t Φ((x - μ_t) / σ_t) and the density of its smooth part at x: (B, D).

    stds broadcast to means (N, B, D). ``smooth`` marks components with σ_t > 0 (None: all
    are); a σ_t = 0 component is a step at μ_t, with no density."""
    if smooth is None:
        z = (x - means) / stds
        density = torch.exp(-0.5 * z * z) / stds
        return torch.special.ndtr(z).mean(dim=0), density.mean(dim=0) / _SQRT_2PI
    z = (x - means) / torch.where(smooth, stds, torch.ones_like(stds))
    cdf = torch.where(smooth, torch.special.ndtr(z), (x >= means).to(x.dtype)).mean(dim=0)
    density = torch.where(smooth, torch.exp(-0.5 * z * z) / stds, torch.zeros_like(z))
    return cdf, density.mean(dim=0) / _SQRT_2PI


def mixture_quantile(
    means: Tensor, variances: Tensor, q: float, tol: float = 1e-6, max_iter: int = 100
) -> Tensor:
    """q-quantile of the equal-weight mixture (1/N) Σ_t N(μ_t, σ_t²), per element.

    means, variances: (N, B, D) (variances broadcastable) -> (B, D) in the dtype of means.
    Solves F(x) = q in float64, F(x) = (1/N) Σ_t Φ((x - μ_t) / σ_t), by Newton steps kept
    inside a bisection bracket (from [min_t(μ_t - 10σ_t), max_t(μ_t + 10σ_t)], starting at the
    moment-matched Gaussian's quantile; a step leaving the bracket is replaced by bisection),
    until every Newton step or bracket is within `tol` (absolute) or after `max_iter` steps:
    a handful of O(N) evaluations where bisection alone needs ~log2(width / tol). Where every
    σ_t is 0 the result is the linear quantile of the means, as in `percentile_interval`.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"mixture quantile q must be in (0, 1), got {q!r}")
    if means.dim() < 1 or means.shape[0] < 1:
        raise ValueError(f"means must be (N, B, D) with N >= 1, got {tuple(means.shape)}")
    mu = means.to(torch.float64)
    sigma = variances.to(torch.float64).clamp_min(0.0).sqrt()
    positive = sigma > 0
    lo = (mu - _BRACKET_SIGMAS * sigma).amin(dim=0)
    hi = (mu + _BRACKET_SIGMAS * sigma).amax(dim=0)
    noise = (sigma * sigma).expand_as(mu).mean(dim=0) if sigma.dim() else sigma * sigma
    spread = (mu.var(dim=0, correction=0) + noise).sqrt()
    x = torch.minimum(torch.maximum(mu.mean(dim=0) + spread * _ndtri(q), lo), hi)
    all_smooth = bool(positive.all())
    smooth = None if all_smooth else positive
    for _ in range(max_iter):
        cdf, density = _mixture_cdf_and_pdf(x, mu, sigma, smooth)
        below = cdf < q
        lo = torch.where(below, x, lo)
        hi = torch.where(below, hi, x)
        step = (cdf - q) / density
        newton = x - step
        accept = (newton > lo) & (newton < hi)  # False for a NaN or infinite step too
        x = torch.where(accept, newton, 0.5 * (lo + hi))
        if bool(((accept & (step.abs() <= tol)) | (hi - lo <= tol)).all()):
            break
    if not all_smooth:
        all_degenerate = ~(sigma > 0).expand_as(mu).any(dim=0)
        x = torch.where(all_degenerate, sample_quantile(mu, q), x)
    return x.to(means.dtype)


def _ndtri(q: float) -> float:
    """Standard normal quantile Φ⁻¹(q) for 0 < q < 1."""
    return float(torch.special.ndtri(torch.tensor(q, dtype=torch.float64)))


def predictive_interval(
    preds: Tensor, noise_var: float | Tensor, level: float
) -> tuple[Tensor, Tensor]:
    """Central interval of the predictive mixture (1/N) Σ_t N(ŷ_t, σ_t²).

    preds: (N, B, D) -> (lower, upper), each (B, D): mixture quantiles at (1 ∓ level) / 2.
    Raises ValueError unless 0 < level < 1.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval level must be in (0, 1), got {level!r}")
    variances = _per_pass_variance(noise_var, preds)
    lower = mixture_quantile(preds, variances, (1.0 - level) / 2.0)
    upper = mixture_quantile(preds, variances, (1.0 + level) / 2.0)
    return lower, upper


def mc_log_likelihood(preds: Tensor, noise_var: float | Tensor, target: Tensor) -> Tensor:
    """MC-dropout test log-likelihood (Gal & Ghahramani, 2016), per row.

    preds: (N, B, D), target: (B, D) -> (B,):
    logsumexp_t [Σ_d log N(y_d | ŷ_t,d, σ²_t,d)] - log N. Every σ² must be > 0.
    """
    variances = _per_pass_variance(noise_var, preds)
    if bool((variances <= 0).any()):
        raise ValueError("mc_log_likelihood needs strictly positive noise variances")
    log_density = -0.5 * (torch.log(2.0 * math.pi * variances) + (target - preds) ** 2 / variances)
    per_pass = log_density.sum(dim=-1)
    return torch.logsumexp(per_pass, dim=0) - math.log(preds.shape[0])


@dataclass(frozen=True)
class RegressionStats:
    """All regression statistics for one batch; every field is (B, D)."""

    mean: Tensor
    """Predictive mean of the passes."""
    epistemic_variance: Tensor
    """Population variance of the passes' means (model uncertainty)."""
    aleatoric_variance: Tensor
    """Mean of the per-pass noise variances (data uncertainty)."""
    variance: Tensor
    """Total predictive variance, epistemic + aleatoric."""
    std: Tensor
    """Square root of the total variance."""
    ci_lower: Tensor
    """Lower percentile of the passes' means."""
    ci_upper: Tensor
    """Upper percentile of the passes' means."""
    pi_lower: Tensor
    """Lower quantile of the Gaussian-mixture predictive distribution."""
    pi_upper: Tensor
    """Upper quantile of the Gaussian-mixture predictive distribution."""


def regression_stats(preds: Tensor, noise_var: float | Tensor, ci_level: float) -> RegressionStats:
    """Compute every regression statistic. preds: (N, B, D) with N >= 1; 0 < ci_level < 1."""
    if preds.dim() != 3 or preds.shape[0] < 1:
        raise ValueError(
            f"preds must be (N, B, D) with N >= 1 passes, got shape {tuple(preds.shape)}"
        )
    epistemic = epistemic_variance(preds)
    aleatoric = aleatoric_variance(noise_var, preds)
    variance = epistemic + aleatoric
    ci_lower, ci_upper = percentile_interval(preds, ci_level)
    pi_lower, pi_upper = predictive_interval(preds, noise_var, ci_level)
    return RegressionStats(
        mean=predictive_mean(preds),
        epistemic_variance=epistemic,
        aleatoric_variance=aleatoric,
        variance=variance,
        std=variance.sqrt(),
        ci_lower=ci_lower,
        ci_upper=ci_upper,
        pi_lower=pi_lower,
        pi_upper=pi_upper,
    )
