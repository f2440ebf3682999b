"""Tests for the percentile-interval helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.engine.stats.intervals import (
    SORT_MAX_VALUES,
    _quantile,
    percentile_interval,
    sample_quantile,
)


@pytest.mark.parametrize("shape", [(1, 3), (2, 4), (7, 5, 3), (50, 2, 2, 2)])
@pytest.mark.parametrize("level", [0.5, 0.9, 0.95])
def test_percentile_interval_matches_numpy_quantile(shape: tuple[int, ...], level: float) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=shape)
    lower, upper = percentile_interval(torch.from_numpy(data), level)
    assert lower.shape == shape[1:]
    np.testing.assert_allclose(
        lower.numpy(), np.quantile(data, (1 - level) / 2, axis=0), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        upper.numpy(), np.quantile(data, (1 + level) / 2, axis=0), rtol=0, atol=1e-12
    )


def test_percentile_interval_matches_torch_quantile_in_float32() -> None:
    samples = torch.randn(20, 6, 4, generator=torch.Generator().manual_seed(1))
    lower, upper = percentile_interval(samples, 0.8)
    assert lower.dtype == torch.float32
    torch.testing.assert_close(lower, torch.quantile(samples, 0.1, dim=0))
    torch.testing.assert_close(upper, torch.quantile(samples, 0.9, dim=0))


def test_percentile_interval_hand_computed() -> None:
    # Sorted passes 0, 1, 2, 3 -> rank 0.25 * 3 = 0.75 and 0.75 * 3 = 2.25.
    samples = torch.tensor([[3.0], [0.0], [2.0], [1.0]], dtype=torch.float64)
    lower, upper = percentile_interval(samples, 0.5)
    assert lower.tolist() == [0.75]
    assert upper.tolist() == [2.25]


def test_single_pass_interval_collapses_to_the_pass() -> None:
    samples = torch.tensor([[1.5, -2.0]])
    lower, upper = percentile_interval(samples, 0.9)
    assert torch.equal(lower, samples[0])
    assert torch.equal(upper, samples[0])


@pytest.mark.parametrize("level", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_percentile_interval_rejects_level_outside_open_unit_interval(level: float) -> None:
    with pytest.raises(ValueError, match="level"):
        percentile_interval(torch.zeros(3, 2), level)


def test_percentile_interval_rejects_empty_sample_dimension() -> None:
    with pytest.raises(ValueError, match="N >= 1"):
        percentile_interval(torch.zeros(0, 2), 0.9)


@pytest.mark.parametrize("q", [0.0, 0.3, 0.5, 1.0])
def test_sample_quantile_matches_numpy(q: float) -> None:
    data = np.random.default_rng(2).normal(size=(9, 3, 2))
    result = sample_quantile(torch.from_numpy(data), q)
    np.testing.assert_allclose(result.numpy(), np.quantile(data, q, axis=0), rtol=0, atol=1e-12)


def test_sample_quantile_rejects_q_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match="q must be"):
        sample_quantile(torch.zeros(3, 2), 1.5)


@pytest.mark.parametrize("shape", [(100, 1, 10), (7, 3, 4), (1, 2, 2), (30, 5), (2, 1)])
@pytest.mark.parametrize("level", [0.95, 0.5, 0.9999])
def test_the_one_sort_path_gives_the_selected_order_statistics_bit_for_bit(
    shape: tuple[int, ...], level: float
) -> None:
    samples = torch.randn(*shape, generator=torch.Generator().manual_seed(len(shape)))
    lower, upper = percentile_interval(samples, level)
    assert samples.numel() <= SORT_MAX_VALUES
    assert torch.equal(lower, _quantile(samples, (1 - level) / 2))
    assert torch.equal(upper, _quantile(samples, (1 + level) / 2))
    torch.testing.assert_close(lower, torch.quantile(samples, (1 - level) / 2, dim=0))
