"""Grid search on a validation split, then the folder that mcdrop serves as it is."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.engine.predictor import PredictionRequest
from app.engine.stats import ClassificationStats, RegressionStats
from app.training import Hyper, TrainConfig, train, write_model_folder

CONFIG = TrainConfig(hidden=(16,), epochs=15, batch_size=16, lr=1e-2, eval_samples=20)


def _blobs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0, 0.0], [4.0, 4.0], [0.0, 4.0]])
    y = torch.arange(90) % 3
    return centres[y] + torch.randn(90, 2, generator=generator), y


def test_grid_search_scores_every_point_and_keeps_the_best() -> None:
    x = torch.linspace(-2, 2, 60).unsqueeze(1)
    y = torch.sin(2 * x) * 10 + 50
    grid = [Hyper(0.1, 0.01, 0.1), Hyper(0.1, 0.01, 10.0)]
    trained = train("regression", x, y, 1, grid, CONFIG)
    assert [hyper for hyper, _ in trained.validation] == grid
    assert trained.hyper == max(trained.validation, key=lambda item: item[1])[0]
    assert trained.rows == 60  # refitted on every row


def test_one_grid_point_trains_once_without_validation() -> None:
    x, y = _blobs()
    trained = train("classification", x, y, 3, [Hyper(0.2, 0.01, 1.0)], CONFIG)
    assert trained.validation == [] and trained.weight_decay == pytest.approx(0.8 * 1e-4 / (2 * 90))


def test_written_classifier_loads_and_predicts(tmp_path: Path) -> None:
    x, y = _blobs()
    trained = train("classification", x, y, 3, [Hyper(0.2, 0.01, 1.0)], CONFIG)
    served = write_model_folder(
        tmp_path / "blobs",
        trained,
        "classification",
        labels=["a", "b", "c"],
        features=["u", "v"],
        target="kind",
        data="blobs.csv",
        config=CONFIG,
    )
    assert (served.name, served.card.target, served.card.labels) == (
        "blobs",
        "kind",
        ["a", "b", "c"],
    )
    assert served.card.training["features"] == ["u", "v"]
    stats = served.predictor.predict(PredictionRequest(x, 30, 0.9, seed=0)).stats
    assert isinstance(stats, ClassificationStats)
    assert float((stats.predicted_class == y).float().mean()) > 0.9


def test_written_regressor_carries_tau_in_target_units(tmp_path: Path) -> None:
    x = torch.linspace(-2, 2, 60).unsqueeze(1)
    y = 100 * x + 7
    trained = train("regression", x, y, 1, [Hyper(0.1, 0.01, 4.0)], CONFIG)
    served = write_model_folder(
        tmp_path / "line",
        trained,
        "regression",
        labels=None,
        features=["x"],
        target="y",
        data="line.csv",
        config=CONFIG,
    )
    assert served.card.regression is not None and served.card.regression.tau is not None
    assert served.card.regression.tau == pytest.approx(4.0 / float(y.std() ** 2), rel=1e-5)
    stats = served.predictor.predict(PredictionRequest(x[:5], 30, 0.9, seed=0)).stats
    assert isinstance(stats, RegressionStats) and stats.mean.shape == (5, 1)
