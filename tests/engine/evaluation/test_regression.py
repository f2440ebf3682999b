"""Regression metrics against closed forms, SciPy integrals and sampled references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from app.engine.evaluation import regression
from app.engine.evaluation.regression import (
    gaussian_expected_abs,
    interval_coverage,
    mc_test_log_likelihood,
    mixture_crps,
    rmse,
)


def test_rmse_hand_computed() -> None:
    mean = torch.tensor([[1.0], [2.0], [4.0]])
    target = torch.tensor([[1.0], [4.0], [0.0]])
    assert float(rmse(mean, target)) == pytest.approx(math.sqrt((0 + 4 + 16) / 3))


def test_mc_log_likelihood_with_one_pass_is_the_gaussian_log_density() -> None:
    preds = torch.tensor([[[1.0], [3.0]]], dtype=torch.float64)
    target = torch.tensor([[0.0], [5.0]], dtype=torch.float64)
    expected = stats.norm.logpdf([0.0, 5.0], loc=[1.0, 3.0], scale=0.5).mean()
    assert float(mc_test_log_likelihood(preds, 0.25, target)) == pytest.approx(expected)


def test_mc_log_likelihood_of_two_passes_averages_the_densities() -> None:
    preds = torch.tensor([[[0.0]], [[2.0]]], dtype=torch.float64)
    target = torch.tensor([[0.5]], dtype=torch.float64)
    density = 0.5 * (stats.norm.pdf(0.5, 0.0, 1.0) + stats.norm.pdf(0.5, 2.0, 1.0))
    assert float(mc_test_log_likelihood(preds, 1.0, target)) == pytest.approx(math.log(density))


def test_interval_coverage_counts_closed_intervals() -> None:
    lower = torch.tensor([[0.0], [0.0], [0.0], [0.0]])
    upper = torch.tensor([[1.0], [1.0], [1.0], [1.0]])
    target = torch.tensor([[0.0], [1.0], [1.5], [-0.1]])
    assert float(interval_coverage(lower, upper, target)) == 0.5


@pytest.mark.parametrize(("m", "var"), [(0.0, 1.0), (1.3, 0.4), (-2.0, 3.0), (0.7, 0.0)])
def test_gaussian_expected_abs_matches_numerical_integration(m: float, var: float) -> None:
    mean, variance = torch.tensor(m, dtype=torch.float64), torch.tensor(var, dtype=torch.float64)
    result = float(gaussian_expected_abs(mean, variance))
    if var == 0.0:
        assert result == abs(m)
        return
    s = math.sqrt(var)
    reference, _ = integrate.quad(lambda x: abs(x) * stats.norm.pdf(x, m, s), -np.inf, np.inf)
    assert result == pytest.approx(reference, rel=1e-9)


def test_crps_of_one_gaussian_is_the_closed_form() -> None:
    mu, sigma, y = 1.0, 2.0, 2.5
    z = (y - mu) / sigma
    closed = sigma * (
        z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / math.sqrt(math.pi)
    )
    result = mixture_crps(torch.tensor([[[mu]]]), sigma**2, torch.tensor([[y]]))
    assert float(result) == pytest.approx(closed, rel=1e-12)


def test_crps_without_noise_of_point_masses() -> None:
    # One pass: |ŷ - y|. Two passes a, b: mean |· - y| - |a - b| / 4.
    assert float(mixture_crps(torch.tensor([[[3.0]]]), 0.0, torch.tensor([[1.0]]))) == 2.0
    two = mixture_crps(torch.tensor([[[0.0]], [[2.0]]]), 0.0, torch.tensor([[0.5]]))
    assert float(two) == pytest.approx((0.5 + 1.5) / 2 - 2.0 / 4)


def _crps_by_integration(means: np.ndarray, std: float, y: float) -> float:
    def squared_gap(x: float) -> float:
        cdf = float(np.mean(stats.norm.cdf(x, means, std)))
        return (cdf - (1.0 if x >= y else 0.0)) ** 2

    lo, hi = float(means.min() - 12 * std), float(means.max() + 12 * std)
    left, _ = integrate.quad(squared_gap, lo, y, limit=200)
    right, _ = integrate.quad(squared_gap, y, hi, limit=200)
    return float(left + right)


def test_mixture_crps_matches_the_integral_of_the_squared_cdf_gap() -> None:
    rng = np.random.default_rng(5)
    means = rng.normal(scale=2.0, size=(6, 3, 1))
    targets = rng.normal(size=(3, 1))
    result = mixture_crps(torch.from_numpy(means), 0.5, torch.from_numpy(targets))
    for b in range(3):
        reference = _crps_by_integration(means[:, b, 0], math.sqrt(0.5), targets[b, 0])
        assert float(result[b, 0]) == pytest.approx(reference, abs=1e-7)


def test_mixture_crps_with_per_pass_variances_matches_sampling() -> None:
    rng = np.random.default_rng(6)
    means = rng.normal(size=(4, 2, 1))
    variances = rng.uniform(0.2, 2.0, size=(4, 2, 1))
    target = np.array([[0.3], [-1.0]])
    result = mixture_crps(
        torch.from_numpy(means), torch.from_numpy(variances), torch.tensor(target)
    )
    draws = 400_000
    pick, pick2 = rng.integers(0, 4, draws), rng.integers(0, 4, draws)
    b = np.arange(2)[None, :]
    x = means[pick[:, None], b, 0] + rng.normal(size=(draws, 2)) * np.sqrt(
        variances[pick[:, None], b, 0]
    )
    x2 = means[pick2[:, None], b, 0] + rng.normal(size=(draws, 2)) * np.sqrt(
        variances[pick2[:, None], b, 0]
    )
    sampled = np.abs(x - target[:, 0]).mean(0) - 0.5 * np.abs(x - x2).mean(0)
    np.testing.assert_allclose(result[:, 0].numpy(), sampled, atol=0.01)


def test_mixture_crps_blocks_give_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    means = torch.from_numpy(rng.normal(size=(9, 4, 2)))
    targets = torch.from_numpy(rng.normal(size=(4, 2)))
    whole = mixture_crps(means, 0.3, targets)
    monkeypatch.setattr(regression, "_CRPS_BLOCK_ELEMENTS", 8)
    torch.testing.assert_close(mixture_crps(means, 0.3, targets), whole)


def _exact_crps(means: torch.Tensor, var: float, target: torch.Tensor) -> torch.Tensor:
    """The O(N²) formula, straight: (1/N) Σ_t A(y - ŷ_t, σ²) - (1/2N²) Σ_t Σ_s A(ŷ_t - ŷ_s, 2σ²)."""
    n = means.shape[0]
    v = torch.tensor(var, dtype=torch.float64)
    first = gaussian_expected_abs(target - means, v).mean(dim=0)
    pairs = gaussian_expected_abs(means[:, None] - means[None], 2 * v).sum(dim=(0, 1))
    return first - pairs / (2 * n * n)


@pytest.mark.parametrize("spread", [0.02, 0.5, 2.0, 20.0])
def test_binned_crps_is_within_its_stated_error_of_the_exact_sum(spread: float) -> None:
    generator = torch.Generator().manual_seed(int(spread * 50))
    means = torch.randn(600, 3, 2, generator=generator, dtype=torch.float64) * spread
    means[:60] -= 5.0 * spread  # a second mode
    target = torch.randn(3, 2, generator=generator, dtype=torch.float64) * spread
    exact = _exact_crps(means, 0.36, target)
    fast = mixture_crps(means, 0.36, target)
    assert ((fast - exact).abs() <= 1.7e-5 * 0.6 + 1e-12).all()  # stated: 1.7e-5 σ
    assert ((fast - exact).abs() / exact <= 1e-3).all()


def test_crps_without_noise_is_exact_from_sorted_passes() -> None:
    means = torch.randn(700, 4, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    target = torch.zeros(4, 1, dtype=torch.float64)
    torch.testing.assert_close(
        mixture_crps(means, 0.0, target), _exact_crps(means, 0.0, target), rtol=1e-12, atol=1e-12
    )


def test_crps_of_passes_too_wide_to_bin_takes_the_exact_sum() -> None:
    means = torch.zeros(300, 1, 1, dtype=torch.float64)
    means[0] = 1e4  # 1e4 / (0.1 / 64) grid steps: wider than the largest grid
    target = torch.zeros(1, 1, dtype=torch.float64)
    torch.testing.assert_close(
        mixture_crps(means, 0.01, target), _exact_crps(means, 0.01, target), rtol=1e-12, atol=0
    )


def test_crps_with_per_pass_variances_of_one_value_uses_the_binned_sum() -> None:
    means = torch.randn(500, 2, 1, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    target = torch.ones(2, 1, dtype=torch.float64)
    as_tensor = mixture_crps(means, torch.full_like(means, 0.5), target)
    torch.testing.assert_close(as_tensor, mixture_crps(means, 0.5, target), rtol=0, atol=0)
