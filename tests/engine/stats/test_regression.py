"""Tests for the regression uncertainty statistics, against closed forms and scipy references."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import optimize, special, stats

from app.engine.stats.intervals import percentile_interval
from app.engine.stats.regression import (
    RegressionStats,
    aleatoric_variance,
    epistemic_variance,
    mc_log_likelihood,
    mixture_quantile,
    mixture_quantiles,
    predictive_interval,
    predictive_mean,
    regression_stats,
)


def _random_preds(shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=shape))


def _brentq_mixture_quantile(means: np.ndarray, stds: np.ndarray, q: float) -> float:
    """Reference quantile of (1/N) Σ_t N(means_t, stds_t²) for one element."""

    def cdf_minus_q(x: float) -> float:
        return float(np.mean(stats.norm.cdf(x, loc=means, scale=stds))) - q

    lo = float(np.min(means - 12 * stds))
    hi = float(np.max(means + 12 * stds))
    return float(optimize.brentq(cdf_minus_q, lo, hi, xtol=1e-13))


def test_predictive_mean_and_epistemic_variance_match_numpy() -> None:
    preds = _random_preds((9, 4, 3), seed=0)
    data = preds.numpy()
    np.testing.assert_allclose(predictive_mean(preds).numpy(), data.mean(axis=0), atol=1e-15)
    np.testing.assert_allclose(
        epistemic_variance(preds).numpy(), data.var(axis=0, ddof=0), rtol=0, atol=1e-15
    )


def test_epistemic_variance_single_pass_is_zero() -> None:
    preds = torch.tensor([[[1.0, -3.0]]])
    assert epistemic_variance(preds).tolist() == [[0.0, 0.0]]


def test_aleatoric_variance_from_float_is_broadcast_exactly() -> None:
    preds = _random_preds((5, 3, 2), seed=1)
    result = aleatoric_variance(0.1, preds)
    assert result.shape == (3, 2)
    assert result.dtype == torch.float64
    assert result.tolist() == [[0.1, 0.1]] * 3


def test_aleatoric_variance_from_tensor_is_mean_over_passes() -> None:
    noise = torch.tensor([[[1.0, 4.0]], [[3.0, 0.0]]], dtype=torch.float64)
    assert aleatoric_variance(noise, torch.zeros(2, 1, 2)).tolist() == [[2.0, 2.0]]


def test_aleatoric_variance_rejects_bad_noise() -> None:
    preds = torch.zeros(3, 2, 1)
    with pytest.raises(ValueError, match=">= 0"):
        aleatoric_variance(-1.0, preds)
    with pytest.raises(ValueError, match="match preds shape"):
        aleatoric_variance(torch.ones(3, 2, 2), preds)


@pytest.mark.parametrize("shape", [(1, 3, 2), (2, 1, 1), (5, 4, 3), (20, 2, 5)])
@pytest.mark.parametrize("q", [0.025, 0.3, 0.5, 0.975])
def test_mixture_quantile_matches_brentq_reference(shape: tuple[int, int, int], q: float) -> None:
    rng = np.random.default_rng(sum(shape))
    means = rng.normal(scale=3.0, size=shape)
    stds = rng.uniform(0.05, 2.0, size=shape)
    result = mixture_quantile(torch.from_numpy(means), torch.from_numpy(stds**2), q).numpy()
    assert result.shape == shape[1:]
    for b in range(shape[1]):
        for d in range(shape[2]):
            expected = _brentq_mixture_quantile(means[:, b, d], stds[:, b, d], q)
            assert abs(result[b, d] - expected) < 1e-5


def test_mixture_quantile_keeps_float32_and_accuracy() -> None:
    rng = np.random.default_rng(7)
    means = rng.normal(size=(4, 3, 1))
    stds = rng.uniform(0.5, 1.5, size=(4, 3, 1))
    result = mixture_quantile(
        torch.from_numpy(means).float(), torch.from_numpy(stds**2).float(), 0.9
    )
    assert result.dtype == torch.float32
    for b in range(3):
        expected = _brentq_mixture_quantile(
            means[:, b, 0].astype(np.float32), stds[:, b, 0].astype(np.float32), 0.9
        )
        assert abs(float(result[b, 0]) - expected) < 1e-5


@pytest.mark.parametrize("q", [0.01, 0.2, 0.5, 0.8, 0.99])
def test_single_component_mixture_is_the_gaussian_quantile(q: float) -> None:
    means = torch.tensor([[[0.0, 2.5, -100.0]]], dtype=torch.float64)
    variances = torch.tensor([[[1.0, 0.25, 9.0]]], dtype=torch.float64)
    result = mixture_quantile(means, variances, q, tol=1e-12)
    expected = means[0] + variances[0].sqrt() * float(special.ndtri(q))
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-11)


@pytest.mark.parametrize("q", [0.05, 0.5, 0.7, 0.95])
def test_zero_variance_mixture_falls_back_to_quantile_of_means(q: float) -> None:
    means = _random_preds((6, 3, 2), seed=8)
    result = mixture_quantile(means, torch.zeros_like(means), q)
    assert not torch.isnan(result).any()
    np.testing.assert_allclose(
        result.numpy(), np.quantile(means.numpy(), q, axis=0), rtol=0, atol=1e-12
    )


def test_mixture_with_one_degenerate_component_has_a_step_cdf() -> None:
    # Half the mass is a point at 0, half is N(5, 1): F jumps from ~0 to 0.5 at x = 0.
    means = torch.tensor([[[0.0]], [[5.0]]], dtype=torch.float64)
    variances = torch.tensor([[[0.0]], [[1.0]]], dtype=torch.float64)
    low = mixture_quantile(means, variances, 0.25, tol=1e-10)
    high = mixture_quantile(means, variances, 0.75, tol=1e-10)
    assert abs(float(low) - 0.0) < 1e-9
    assert abs(float(high) - 5.0) < 1e-9


def test_mixture_quantile_rejects_q_outside_open_unit_interval() -> None:
    with pytest.raises(ValueError, match="q must be"):
        mixture_quantile(torch.zeros(2, 1, 1), torch.ones(2, 1, 1), 1.0)


def test_predictive_interval_with_zero_noise_is_the_percentile_interval() -> None:
    preds = _random_preds((10, 3, 2), seed=9)
    pi_lower, pi_upper = predictive_interval(preds, 0.0, 0.9)
    ci_lower, ci_upper = percentile_interval(preds, 0.9)
    torch.testing.assert_close(pi_lower, ci_lower)
    torch.testing.assert_close(pi_upper, ci_upper)


@pytest.mark.parametrize("noise", ["float", "tensor"])
def test_predictive_interval_contains_the_passes_interval_when_noisy(noise: str) -> None:
    preds = _random_preds((30, 8, 3), seed=10)
    noise_var: float | torch.Tensor = (
        1.0 if noise == "float" else torch.full_like(preds, 0.5) + preds.abs()
    )
    pi_lower, pi_upper = predictive_interval(preds, noise_var, 0.9)
    ci_lower, ci_upper = percentile_interval(preds, 0.9)
    assert bool((pi_lower < ci_lower).all())
    assert bool((pi_upper > ci_upper).all())


def test_predictive_interval_single_pass_is_gaussian_interval() -> None:
    preds = torch.tensor([[[1.0, -2.0]]], dtype=torch.float64)
    lower, upper = predictive_interval(preds, 4.0, 0.95)
    half_width = 2.0 * float(special.ndtri(0.975))
    torch.testing.assert_close(lower, preds[0] - half_width, rtol=0, atol=1e-5)
    torch.testing.assert_close(upper, preds[0] + half_width, rtol=0, atol=1e-5)


def test_predictive_interval_rejects_bad_level() -> None:
    with pytest.raises(ValueError, match="level"):
        predictive_interval(torch.zeros(2, 1, 1), 1.0, 1.0)


def test_mc_log_likelihood_single_pass_is_gaussian_log_density() -> None:
    preds = torch.tensor([[[1.0, 2.0], [0.0, -1.0]]], dtype=torch.float64)
    target = torch.tensor([[1.5, 2.0], [3.0, -1.0]], dtype=torch.float64)
    var = 0.5
    expected = [
        sum(
            -0.5 * math.log(2 * math.pi * var) - (y - m) ** 2 / (2 * var)
            for y, m in zip(target_row, pred_row, strict=True)
        )
        for target_row, pred_row in zip(target.tolist(), preds[0].tolist(), strict=True)
    ]
    result = mc_log_likelihood(preds, var, target)
    assert result.shape == (2,)
    assert result.tolist() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("noise", ["float", "tensor"])
def test_mc_log_likelihood_matches_scipy_logsumexp(noise: str) -> None:
    rng = np.random.default_rng(11)
    preds = rng.normal(size=(3, 4, 2))
    target = rng.normal(size=(4, 2))
    variances = np.full_like(preds, 0.3) if noise == "float" else rng.uniform(0.1, 2.0, preds.shape)
    noise_var: float | torch.Tensor = 0.3 if noise == "float" else torch.from_numpy(variances)
    per_pass = stats.norm.logpdf(target, loc=preds, scale=np.sqrt(variances)).sum(axis=-1)
    expected = special.logsumexp(per_pass, axis=0) - math.log(3)
    result = mc_log_likelihood(torch.from_numpy(preds), noise_var, torch.from_numpy(target))
    np.testing.assert_allclose(result.numpy(), expected, rtol=0, atol=1e-12)


def test_mc_log_likelihood_rejects_non_positive_noise() -> None:
    with pytest.raises(ValueError, match="strictly positive"):
        mc_log_likelihood(torch.zeros(2, 1, 1), 0.0, torch.zeros(1, 1))


def test_regression_stats_combines_the_parts() -> None:
    preds = _random_preds((12, 4, 2), seed=12)
    result = regression_stats(preds, 0.2, ci_level=0.8)
    assert isinstance(result, RegressionStats)
    torch.testing.assert_close(result.mean, predictive_mean(preds))
    torch.testing.assert_close(result.epistemic_variance, epistemic_variance(preds))
    assert result.aleatoric_variance.tolist() == [[0.2, 0.2]] * 4
    torch.testing.assert_close(result.variance, result.epistemic_variance + 0.2)
    torch.testing.assert_close(result.std, result.variance.sqrt())
    ci_lower, ci_upper = percentile_interval(preds, 0.8)
    torch.testing.assert_close(result.ci_lower, ci_lower)
    torch.testing.assert_close(result.ci_upper, ci_upper)
    pi_lower, pi_upper = predictive_interval(preds, 0.2, 0.8)
    torch.testing.assert_close(result.pi_lower, pi_lower)
    torch.testing.assert_close(result.pi_upper, pi_upper)
    for field in dataclasses.fields(result):
        assert getattr(result, field.name).shape == (4, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.mean = result.std  # type: ignore[misc]


@pytest.mark.parametrize("shape", [(3, 4), (0, 2, 1)])
def test_regression_stats_rejects_wrong_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(N, B, D\)"):
        regression_stats(torch.zeros(shape), 0.1, ci_level=0.9)


@pytest.mark.parametrize("spread", [0.05, 1.0])
@pytest.mark.parametrize("q", [0.005, 0.5, 0.975])
def test_binned_mixture_quantile_is_within_its_stated_error(spread: float, q: float) -> None:
    # Many passes and one noise variance take the binned path; a per-pass variance tensor of
    # the same value takes the exact one. Stated: |ΔF| <= 7.4e-6, so |Δx| <= 7.4e-6 / f(x_q).
    generator = torch.Generator().manual_seed(int(spread * 100))
    means = torch.randn(5000, 2, 2, generator=generator, dtype=torch.float64) * spread
    means[:500] += 4.0 * spread  # a second mode
    binned = mixture_quantile(means, torch.tensor(0.64, dtype=torch.float64), q, tol=1e-10)
    exact = mixture_quantile(means, torch.full_like(means, 0.64), q, tol=1e-10)
    density = torch.exp(-0.5 * ((exact - means) / 0.8) ** 2).mean(dim=0) / (0.8 * 2.5066282746)
    assert ((binned - exact).abs() <= 7.4e-6 / density + 1e-9).all()
    assert not torch.equal(binned, exact)  # the binned path did run


def test_mixture_quantiles_give_each_quantile() -> None:
    means = _random_preds((400, 3, 1), seed=4)
    lower, upper = mixture_quantiles(means, torch.tensor(0.5), (0.1, 0.9))
    torch.testing.assert_close(lower, mixture_quantile(means, torch.tensor(0.5), 0.1))
    torch.testing.assert_close(upper, mixture_quantile(means, torch.tensor(0.5), 0.9))
