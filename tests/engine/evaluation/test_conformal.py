"""Conformal calibration of served models: the guarantee on held-out rows, reports by hand."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from app.engine.conformal import ConformalOutput
from app.engine.evaluation.conformal import ConformalReport, conformal_report, fit_conformal
from app.engine.predictor import PredictionRequest, Predictor
from app.errors import InvalidInputError
from app.registry.loading import load_model_folder
from app.registry.served import ServedModel

Factory = Callable[..., Path]
SPLITS, POOL, CAL = 20, 600, 200
MC_TOLERANCE = 0.02
"""Calibration and test rows are sampled with different seeds: std differs a little per draw."""


def regression_model(factory: Factory) -> ServedModel:
    """TinyNet y = 2x + 1 with one input, 16 hidden units (each x), dropout 0.5 and tau 4."""
    state = {
        "inp.weight": torch.ones(16, 1),
        "inp.bias": torch.zeros(16),
        "out.weight": torch.full((1, 16), 2 / 16),
        "out.bias": torch.ones(1),
    }
    folder = factory(
        "line",
        task="regression",
        state=state,
        kwargs={"in_features": 1, "hidden": 16, "out_features": 1},
        card={"input": {"shape": [1], "dtype": "float32"}, "target": "y"},
    )
    return load_model_folder(folder)


def _tolerance(level: float, test_rows: int) -> float:
    """1/(n+1) + 3 sd of the coverage given the calibration rows (Beta) and the test share."""
    spread = math.sqrt(level * (1 - level) * (1 / (CAL + 2) + 1 / test_rows))
    return 1 / (CAL + 1) + 3 * spread + MC_TOLERANCE


def _splits() -> list[tuple[torch.Tensor, torch.Tensor]]:
    orders = [
        torch.randperm(POOL, generator=torch.Generator().manual_seed(s)) for s in range(SPLITS)
    ]
    return [(order[:CAL], order[CAL:]) for order in orders]


def _reports(
    model: ServedModel, x: torch.Tensor, y: torch.Tensor, level: float
) -> list[ConformalReport]:
    """Calibrate on each split's first CAL rows, serve the rest with another seed, and check
    that every split covers at least the level less the tolerance."""
    reports = []
    for split, (cal, test) in enumerate(_splits()):
        passes = model.predictor.sample_passes(PredictionRequest(x[cal], 30, 0.95, seed=split))
        rule = fit_conformal(passes, y[cal], level)
        served = Predictor(model.predictor.sampler, replace(model.predictor.spec, conformal=rule))
        prediction = served.predict(PredictionRequest(x[test], 30, 0.95, seed=100 + split))
        assert prediction.conformal is not None
        report = conformal_report(prediction.conformal, y[test])
        assert report.coverage >= level - _tolerance(level, test.shape[0]), (split, report)
        reports.append(report)
    return reports


def test_regression_band_covers_held_out_rows_on_twenty_splits(model_factory: Factory) -> None:
    model = regression_model(model_factory)
    generator = torch.Generator().manual_seed(11)
    x = torch.rand(POOL, 1, generator=generator) * 4 - 2
    y = (2 * x + 1 + (0.2 + 0.8 * x.abs()) * torch.randn(POOL, 1, generator=generator)).double()
    reports = _reports(model, x, y, 0.9)
    assert sum(r.coverage for r in reports) / SPLITS >= 0.9 - 1 / (CAL + 1) - MC_TOLERANCE


def test_prediction_sets_cover_held_out_labels_on_twenty_splits(model_factory: Factory) -> None:
    # 16 hidden units copy each input (x5); each logit averages its 16: logits 10x + 1
    state = {
        "inp.weight": 5 * torch.eye(2).repeat_interleave(16, dim=0),
        "inp.bias": torch.zeros(32),
        "out.weight": torch.eye(2).repeat_interleave(16, dim=1) * 2 / 16,
        "out.bias": torch.ones(2),
    }
    kwargs = {"in_features": 2, "hidden": 32, "out_features": 2}
    model = load_model_folder(model_factory("sets", state=state, kwargs=kwargs))
    generator = torch.Generator().manual_seed(12)
    x = torch.randn(POOL, 2, generator=generator)
    y = (x[:, 1] + 0.3 * torch.randn(POOL, generator=generator) > x[:, 0]).long()
    reports = _reports(model, x, y, 0.8)
    assert sum(r.coverage for r in reports) / SPLITS >= 0.8 - 1 / (CAL + 1) - MC_TOLERANCE
    # not the trivial answer (both classes for every row)
    assert sum(r.mean_set_size or 2.0 for r in reports) / SPLITS < 1.95


def test_too_few_rows_for_the_level_are_refused(model_factory: Factory) -> None:
    model = regression_model(model_factory)
    x = torch.zeros(8, 1)
    passes = model.predictor.sample_passes(PredictionRequest(x, 5, 0.95, seed=0))
    with pytest.raises(InvalidInputError, match="need 9"):
        fit_conformal(passes, torch.ones(8, 1, dtype=torch.float64), 0.9)


def test_report_by_hand() -> None:
    band = ConformalOutput(
        0.9, lower=torch.tensor([[0.0], [1.0]]), upper=torch.tensor([[2.0], [5.0]])
    )
    report = conformal_report(band, torch.tensor([[1.0], [6.0]]))
    assert (report.coverage, report.mean_width, report.mean_set_size) == (0.5, 3.0, None)
    sets = ConformalOutput(0.8, sets=torch.tensor([[True, False, True], [False, True, False]]))
    report = conformal_report(sets, torch.tensor([2, 0]))
    assert (report.coverage, report.mean_set_size, report.mean_width) == (0.5, 1.5, None)
