"""Fitted noise by default, the held-out check, and the heteroscedastic variance head."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from app.engine.predictor import PredictionRequest
from app.engine.stats import RegressionStats
from app.training import Hyper, TrainConfig, Trained, fit, train, write_model_folder
from app.training.mlp import Noise
from app.training.noise import fit_noise_variance, held_out_check

CONFIG = TrainConfig(hidden=(32,), epochs=40, batch_size=32, lr=1e-2, eval_samples=30)
HOMO = Hyper(0.05, 0.01, 1.0)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny MLPs train fastest on one thread (as `mcdrop train` does); many times faster on a
    busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_one_pass_fits_the_mean_squared_residual() -> None:
    preds = torch.tensor([[[1.0], [2.0], [4.0], [0.0]]])  # N = 1, B = 4
    target = torch.tensor([[0.0], [2.0], [2.0], [1.0]])
    # maximiser of mean log N(y | ŷ, σ²): σ² = mean (ŷ - y)² = (1 + 0 + 4 + 1) / 4
    assert fit_noise_variance(preds, target) == pytest.approx(1.5, rel=1e-6)


def test_identical_passes_fit_the_same_as_one() -> None:
    generator = torch.Generator().manual_seed(0)
    one = torch.randn(1, 30, 2, generator=generator)
    target = torch.randn(30, 2, generator=generator)
    expected = float(((one[0] - target) ** 2).mean())
    assert fit_noise_variance(one.expand(10, 30, 2), target) == pytest.approx(expected, rel=1e-6)


def test_held_out_check_by_hand() -> None:
    preds = torch.zeros(1, 2, 1)
    target = torch.tensor([[0.0], [3.0]])  # 3 lies outside ±1.96
    check = held_out_check(preds, 1.0, target)
    assert (check.rows, check.pi_coverage) == (2, 0.5)
    assert check.rmse == pytest.approx(math.sqrt(4.5))
    assert check.log_likelihood == pytest.approx(-0.5 * math.log(2 * math.pi) - 0.25 * 9)


def _line(rows: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(rows, 1, generator=generator) * 4 - 2
    return x, 10 * x + 50 + noise * torch.randn(rows, 1, generator=generator)


def test_tau_is_fitted_on_the_validation_split_by_default(tmp_path: Path) -> None:
    x, y = _line(400, 2.0)
    trained = train("regression", x, y, 1, [Hyper(0.05, 0.01, None)], CONFIG)
    assert trained.noise_variance is not None and trained.check is not None
    # the fitted noise is the data's (σ = 2) up to what the network misses
    assert 3.0 < trained.noise_variance < 6.0
    assert 0.9 <= trained.check.pi_coverage <= 1.0 and trained.check.rows == 80
    served = write_model_folder(
        tmp_path / "line", trained, "regression", labels=None, features=["x"], target="y",
        data="line.csv", config=CONFIG,
    )  # fmt: skip
    assert served.card.regression is not None
    assert served.card.regression.tau == pytest.approx(1 / trained.noise_variance, rel=1e-5)
    section = served.card.training
    assert section["tau_source"] == "fitted"
    assert section["validation"]["pi_coverage_95"] == pytest.approx(trained.check.pi_coverage)
    assert set(section["validation"]) == {"rows", "rmse", "log_likelihood", "pi_coverage_95"}


def test_a_given_tau_wins() -> None:
    x, y = _line(200, 2.0)
    trained = train("regression", x, y, 1, [Hyper(0.05, 0.01, 3.0)], CONFIG)
    assert trained.noise_variance is None and trained.check is not None


def test_variance_head_tracks_noise_that_grows_with_x(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(5)
    x = torch.rand(400, 1, generator=generator) * 4
    y = 3 * x + (0.2 + 1.0 * x) * torch.randn(400, 1, generator=generator)
    probe = torch.linspace(0.1, 3.9, 40).unsqueeze(1)
    served_std = {}
    runs: tuple[tuple[Noise, Hyper], ...] = (
        ("heteroscedastic", Hyper(0.05, 0.01, None)),
        ("homoscedastic", HOMO),
    )
    for noise, hyper in runs:
        config = TrainConfig(hidden=(32,), epochs=20, batch_size=32, lr=5e-3, noise=noise)
        trained = Trained(fit("regression", x, y, 1, hyper, config), hyper, 0.0, 400, 0.0)
        served = write_model_folder(
            tmp_path / noise, trained, "regression", labels=None, features=["x"], target="y",
            data="hetero.csv", config=config,
        )  # fmt: skip
        stats = served.predictor.predict(PredictionRequest(probe, 50, 0.95, seed=0)).stats
        assert isinstance(stats, RegressionStats)
        served_std[noise] = stats.aleatoric_variance.sqrt().flatten()
    truth = (0.2 + 1.0 * probe).flatten()
    hetero = torch.corrcoef(torch.stack([served_std["heteroscedastic"], truth]))[0, 1]
    assert float(hetero) > 0.9
    # one noise level: the same aleatoric std for every row, whatever the x
    assert float(served_std["homoscedastic"].std()) == pytest.approx(0.0, abs=1e-5)
    card = (tmp_path / "heteroscedastic" / "model.yaml").read_text()
    assert "variance_head: true" in card and "noise: heteroscedastic" in card
