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


def _two_class_csv(path: Path, rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 2, generator=generator)
    target = (x[:, 1] > x[:, 0]).long()
    names = ["right" if t else "left" for t in target.tolist()]
    write_csv(path, ["a", "b", "label"], [[*r, n] for r, n in zip(x.tolist(), names, strict=True)])
    return x, target


def test_lac_is_the_default_and_mondrian_keeps_a_threshold_per_class(
    model_factory: Factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.engine.conformal import mondrian_quantiles
    from app.engine.conformal_sets import SetParameters, calibration_scores

    folder = model_factory(card={"target": "label"})
    x, target = _two_class_csv(tmp_path / "cal.csv", 80, seed=0)
    argv = ["calibrate", str(folder), "--conformal", "--in-data", str(tmp_path / "cal.csv")]
    assert main([*argv, "--level", "0.8", "--mondrian", "--seed", "1"]) == 0
    assert "conformal LAC threshold at level 0.8" in capsys.readouterr().out
    section = yaml.safe_load((folder / "model.yaml").read_text())["conformal"]
    model = load_model_folder(folder)
    passes = model.predictor.sample_passes(PredictionRequest(x, 20, 0.95, seed=1))
    probs = passes.values.double().mean(0)
    scores = calibration_scores(probs, target, SetParameters("lac"), torch.Generator())
    assert section["kind"] == "lac"
    assert section["quantile"] == pytest.approx(conformal_quantile(scores, 0.8))
    expected = mondrian_quantiles(scores, target, 2, 0.8).tolist()
    assert section["class_quantiles"] == pytest.approx(expected)
    _two_class_csv(tmp_path / "test.csv", 200, seed=2)
    assert main(["evaluate", str(folder), "--data", str(tmp_path / "test.csv")]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("conformal"))
    assert "per class 0: " in line and ", 1: " in line


def test_raps_writes_its_penalty_and_randomised_sets_are_seeded(
    model_factory: Factory, tmp_path: Path
) -> None:
    folder = model_factory(card={"target": "label"})
    x, _ = _two_class_csv(tmp_path / "cal.csv", 60, seed=0)
    argv = ["calibrate", str(folder), "--conformal", "--in-data", str(tmp_path / "cal.csv")]
    argv += ["--score", "raps", "--penalty", "0.05", "--k-reg", "1", "--randomized"]
    assert main(argv) == 0
    section = yaml.safe_load((folder / "model.yaml").read_text())["conformal"]
    assert section["kind"] == "raps" and section["penalty"] == 0.05
    assert section["k_reg"] == 1 and section["randomized"] is True
    model = load_model_folder(folder)
    first = model.predictor.predict(PredictionRequest(x, 20, 0.95, seed=7)).conformal
    again = model.predictor.predict(PredictionRequest(x, 20, 0.95, seed=7)).conformal
    assert first is not None and again is not None and first.sets is not None
    assert again.sets is not None and torch.equal(first.sets, again.sets)


def test_an_abstention_score_is_not_a_set_score(
    model_factory: Factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_factory(card={"target": "label"})
    _two_class_csv(tmp_path / "cal.csv", 30, seed=0)
    argv = ["calibrate", str(folder), "--conformal", "--in-data", str(tmp_path / "cal.csv")]
    assert main([*argv, "--score", "mutual_information"]) == 2
    assert "--conformal takes --score lac, aps, raps" in capsys.readouterr().err
    argv = ["calibrate", str(folder), "--in-data", str(tmp_path / "cal.csv"), "--score", "lac"]
    assert main(argv) == 2
    assert "is a conformal score" in capsys.readouterr().err
