"""``mcdrop calibrate --conformal``: the card's conformal section, then evaluate reports it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from app.cli import main
from app.commands.tabular import write_csv
from app.engine.conformal import aps_scores, conformal_quantile, normalised_residuals
from app.engine.evaluation.conformal import summary
from app.engine.predictor import PredictionRequest
from app.registry.loading import load_model_folder
from tests.support import tiny_state

Factory = Callable[..., Path]


def _regression_folder(factory: Factory) -> Path:
    return factory(
        "line",
        task="regression",
        state=tiny_state(1, 2, 1),
        kwargs={"in_features": 1, "hidden": 2, "out_features": 1},
        card={"input": {"shape": [1], "dtype": "float32"}, "target": "y"},
    )


def _line_csv(path: Path, rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(rows, 1, generator=generator) * 2
    y = 2 * x + 1 + 0.5 * torch.randn(rows, 1, generator=generator)
    write_csv(path, ["x", "y"], torch.cat([x, y], dim=1).tolist())
    return x, y


def test_regression_section_is_the_normalised_residual_quantile(
    model_factory: Factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _regression_folder(model_factory)
    x, y = _line_csv(tmp_path / "cal.csv", 99, seed=0)
    argv = ["calibrate", str(folder), "--conformal", "--in-data", str(tmp_path / "cal.csv")]
    assert main([*argv, "--level", "0.9", "--n-samples", "40", "--seed", "3"]) == 0
    assert "normalised-residual quantile at level 0.9" in capsys.readouterr().out
    section = yaml.safe_load((folder / "model.yaml").read_text())["conformal"]
    model = load_model_folder(folder)
    passes = model.predictor.sample_passes(PredictionRequest(x, 40, 0.95, seed=3))
    mean, std = summary(passes)
    assert std is not None
    expected = conformal_quantile(normalised_residuals(mean, std, y.double()), 0.9)
    assert section == {
        "kind": "normalised_residual",
        "level": 0.9,
        "quantile": pytest.approx(expected, rel=1e-12),
        "rows": 99,
        "calibrated_on": "cal.csv",
        "n_samples": 40,
    }
    prediction = model.predictor.predict(PredictionRequest(x[:3], 40, 0.95, seed=3))
    assert prediction.conformal is not None and prediction.conformal.lower is not None
    assert torch.allclose(
        prediction.conformal.lower, prediction.stats.mean - section["quantile"] * std[:3].float()
    )
    _line_csv(tmp_path / "test.csv", 200, seed=1)
    assert main(["evaluate", str(folder), "--data", str(tmp_path / "test.csv")]) == 0
    assert "conformal (level 0.9): coverage " in capsys.readouterr().out
    argv = ["evaluate", str(folder), "--data", str(tmp_path / "test.csv"), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)["conformal"]
    assert report["rows"] == 200 and report["mean_width"] > 0 and report["mean_set_size"] is None
    assert report["coverage"] >= 0.8


def test_classification_section_is_the_aps_threshold(
    model_factory: Factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_factory(card={"target": "label"})
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, 2, generator=generator)
    labels = ["right" if b > a else "left" for a, b in x.tolist()]
    write_csv(
        tmp_path / "cal.csv",
        ["a", "b", "label"],
        [[*row, label] for row, label in zip(x.tolist(), labels, strict=True)],
    )
    argv = ["calibrate", str(folder), "--conformal", "--in-data", str(tmp_path / "cal.csv")]
    assert main([*argv, "--level", "0.8", "--score", "aps", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    model = load_model_folder(folder)
    passes = model.predictor.sample_passes(PredictionRequest(x, 20, 0.95, seed=0))
    target = torch.tensor([1 if label == "right" else 0 for label in labels])
    expected = conformal_quantile(aps_scores(passes.values.double().mean(0), target), 0.8)
    assert printed["kind"] == "aps" and printed["quantile"] == pytest.approx(expected)
    assert model.card.conformal is not None and model.card.conformal.kind == "aps"
    prediction = model.predictor.predict(PredictionRequest(x[:4], 20, 0.95, seed=0))
    assert prediction.conformal is not None and prediction.conformal.sets is not None
    assert prediction.conformal.sets.shape == (4, 2)


def test_bad_requests_are_refused(
    model_factory: Factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _regression_folder(model_factory)
    _line_csv(tmp_path / "few.csv", 5, seed=0)
    argv = ["calibrate", str(folder), "--conformal", "--in-data", str(tmp_path / "few.csv")]
    assert main([*argv, "--level", "1.5"]) == 2
    assert "--level must be in (0, 1)" in capsys.readouterr().err
    assert main([*argv, "--level", "0.9"]) == 2
    assert "too few for level 0.9: need 9" in capsys.readouterr().err
    write_csv(tmp_path / "text.csv", ["x", "y"], [[1.0, "tall"]] * 20)
    argv[4] = str(tmp_path / "text.csv")
    assert main(argv) == 2
    assert "must be numbers" in capsys.readouterr().err
    assert "conformal" not in yaml.safe_load((folder / "model.yaml").read_text())
