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


def _mixture_cdf(x: Tensor, means: Tensor, stds: Tensor) -> Tensor:
    """(1/N) Σ_t Φ((x - μ_t) / σ_t) for x: (B, D); a σ_t = 0 component is a step at μ_t."""
    degenerate = stds == 0
    z = (x - means) / torch.where(degenerate, torch.ones_like(stds), stds)
    component = torch.where(degenerate, (x >= means).to(x.dtype), torch.special.ndtr(z))
    return component.mean(dim=0)


def mixture_quantile(
    means: Tensor, variances: Tensor, q: float, tol: float = 1e-6, max_iter: int = 100
) -> Tensor:
    """q-quantile of the equal-weight mixture (1/N) Σ_t N(μ_t, σ_t²), per element.

    means, variances: (N, B, D) (variances broadcastable) -> (B, D) in the dtype of means.
    Solves F(x) = q by vectorised bisection in float64 on F(x) = (1/N) Σ_t Φ((x - μ_t) / σ_t),
    from [min_t(μ_t - 10σ_t), max_t(μ_t + 10σ_t)] until the bracket is narrower than `tol`
    (absolute) or after `max_iter` halvings. Where every σ_t is 0 the result is the linear
    quantile of the means, as in `percentile_interval`.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"mixture quantile q must be in (0, 1), got {q!r}")
    if means.dim() < 1 or means.shape[0] < 1:
        raise ValueError(f"means must be (N, B, D) with N >= 1, got {tuple(means.shape)}")
    mu = means.to(torch.float64)
    sigma = variances.to(torch.float64).clamp_min(0.0).sqrt().expand_as(mu)
    lo = (mu - _BRACKET_SIGMAS * sigma).amin(dim=0)
    hi = (mu + _BRACKET_SIGMAS * sigma).amax(dim=0)
    for _ in range(max_iter):
        if bool(torch.all(hi - lo <= tol)):
            break
        mid = 0.5 * (lo + hi)
        below = _mixture_cdf(mid, mu, sigma) < q
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    root = 0.5 * (lo + hi)
    all_degenerate = (sigma == 0).all(dim=0)
    root = torch.where(all_degenerate, sample_quantile(mu, q), root)
    return root.to(means.dtype)


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
