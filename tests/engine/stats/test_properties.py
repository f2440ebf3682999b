"""Hypothesis checks of invariants every statistic must keep, whatever the passes are."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine.stats import classification_stats, regression_stats

_FLOATS = st.floats(min_value=-30.0, max_value=30.0, allow_nan=False)


@st.composite
def _logits(draw: st.DrawFn) -> torch.Tensor:
    n, b, c = draw(st.integers(1, 12)), draw(st.integers(1, 4)), draw(st.integers(2, 6))
    values = draw(st.lists(_FLOATS, min_size=n * b * c, max_size=n * b * c))
    return torch.tensor(values, dtype=torch.float64).view(n, b, c)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(logits=_logits(), level=st.floats(0.05, 0.99))
def test_classification_invariants(logits: torch.Tensor, level: float) -> None:
    probs = torch.softmax(logits, -1)
    n, _, c = probs.shape
    stats = classification_stats(probs, level)
    torch.testing.assert_close(stats.mean.sum(-1), torch.ones(probs.shape[1], dtype=probs.dtype))
    eps = 1e-9
    assert (stats.mutual_information >= 0).all()
    assert (stats.expected_entropy <= stats.predictive_entropy + eps).all()
    assert (stats.predictive_entropy <= math.log(c) + eps).all()
    torch.testing.assert_close(
        stats.predictive_entropy, stats.expected_entropy + stats.mutual_information
    )
    assert ((stats.variation_ratio >= 0) & (stats.variation_ratio <= 1 - 1 / c + eps)).all()
    assert (stats.ci_lower <= stats.ci_upper).all()
    assert (stats.std >= 0).all()
    assert torch.equal(stats.confidence, stats.mean.max(-1).values)
    # the passes' range always contains the mean; a near-1 level interval is that range
    wide = classification_stats(probs, 1 - 1e-12)
    assert (wide.ci_lower <= stats.mean + eps).all() and (stats.mean <= wide.ci_upper + eps).all()
    assert n >= 1


@st.composite
def _passes(draw: st.DrawFn) -> torch.Tensor:
    n, b = draw(st.integers(1, 12)), draw(st.integers(1, 3))
    values = draw(st.lists(_FLOATS, min_size=n * b, max_size=n * b))
    return torch.tensor(values, dtype=torch.float64).view(n, b, 1)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(preds=_passes(), noise=st.floats(1e-3, 50.0), level=st.floats(0.05, 0.99))
def test_regression_invariants(preds: torch.Tensor, noise: float, level: float) -> None:
    stats = regression_stats(preds, noise, level)
    torch.testing.assert_close(stats.variance, stats.epistemic_variance + noise)
    torch.testing.assert_close(stats.std**2, stats.variance)
    assert (stats.ci_lower <= stats.ci_upper).all() and (stats.pi_lower <= stats.pi_upper).all()
    # with noise wider than the spread of the passes, F(mean) lies in [Φ(-1), Φ(1)], so every
    # predictive interval at a level above 0.69 contains the mean
    spread = (preds - stats.mean).abs().max()
    if math.sqrt(noise) >= float(spread) and level > 0.69:
        assert (stats.pi_lower <= stats.mean).all() and (stats.mean <= stats.pi_upper).all()
