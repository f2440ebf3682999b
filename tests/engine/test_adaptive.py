from __future__ import annotations

import math

import pytest
import torch

from app.engine.adaptive import mc_standard_error, next_sample_count
from app.engine.predictor import PredictionRequest
from app.registry.loading import load_model_folder
from tests.support import BUNDLED_MODELS


def test_standard_error_is_the_largest_std_over_sqrt_n() -> None:
    values = torch.tensor([[[0.0, 1.0]], [[2.0, 1.0]], [[4.0, 1.0]], [[6.0, 1.0]]])  # (4, 1, 2)
    # unbiased std of 0, 2, 4, 6 is sqrt(20/3); divided by sqrt(4)
    assert mc_standard_error(values) == pytest.approx(math.sqrt(20 / 3) / 2)
    assert mc_standard_error(values[:1]) == math.inf


@pytest.mark.parametrize(
    ("n", "se", "tol", "cap", "expected"),
    [
        (32, 0.01, 0.01, 1000, 32),  # converged
        (32, 0.05, 0.01, 5000, 960),  # 32 * 25 * 1.2 = 960, a multiple of 16
        (32, 0.04, 0.01, 5000, 624),  # 32 * 16 * 1.2 = 614.4 -> aligned up to 624
        (32, 0.011, 0.01, 5000, 64),  # at least doubles
        (32, 0.05, 0.01, 500, 500),  # capped
        (500, 0.05, 0.01, 500, 500),  # at the cap: done
    ],
)
def test_next_sample_count(n: int, se: float, tol: float, cap: int, expected: int) -> None:
    assert next_sample_count(n, se, tol, cap) == expected


def test_adaptive_request_meets_its_tolerance_and_reports_n() -> None:
    model = load_model_folder(BUNDLED_MODELS / "diabetes-mlp")
    x = torch.zeros(2, 10)
    loose = model.predictor.predict(
        PredictionRequest(x, n_samples=2000, ci_level=0.9, seed=1, tolerance=2.0)
    )
    tight = model.predictor.predict(
        PredictionRequest(x, n_samples=2000, ci_level=0.9, seed=1, tolerance=0.05)
    )
    assert loose.converged and tight.converged
    assert loose.mc_standard_error <= 2.0 and tight.mc_standard_error <= 0.05
    assert 32 <= loose.n_samples < tight.n_samples <= 2000
    # the first samples of the adaptive run are the fixed-N run's samples (same seed)
    fixed = model.predictor.predict(
        PredictionRequest(x, n_samples=tight.n_samples, ci_level=0.9, seed=1, return_samples=True)
    )
    assert fixed.n_samples == tight.n_samples
    torch.testing.assert_close(fixed.stats.mean, tight.stats.mean, rtol=1e-6, atol=1e-6)


def test_adaptive_request_stops_at_the_cap_unconverged() -> None:
    model = load_model_folder(BUNDLED_MODELS / "diabetes-mlp")
    result = model.predictor.predict(
        PredictionRequest(torch.zeros(1, 10), n_samples=48, ci_level=0.9, seed=1, tolerance=1e-6)
    )
    assert result.n_samples == 48 and result.converged is False
