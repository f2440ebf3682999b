"""``mcdrop calibrate``: the threshold keeps the target share and lands in the card."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from app.cli import main
from app.commands.tabular import write_csv
from app.engine.evaluation import threshold_for_share
from app.engine.predictor import PredictionRequest
from app.engine.stats import ClassificationStats
from app.registry.loading import load_model_folder

Factory = Callable[..., Path]


IN_ROWS = (torch.rand(36, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1).tolist()
OUT_ROWS = (torch.rand(16, 2, generator=torch.Generator().manual_seed(1)) * 4 + 4).tolist()


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    """In-distribution rows near the origin (with a label column), OOD rows far away."""
    in_path, out_path = tmp_path / "in.csv", tmp_path / "out.csv"
    write_csv(in_path, ["a", "b", "label"], [[*row, "left"] for row in IN_ROWS])
    write_csv(out_path, ["a", "b"], OUT_ROWS)
    return in_path, out_path


def _mutual_information(folder: Path, rows: list[list[float]]) -> torch.Tensor:
    model = load_model_folder(folder)
    request = PredictionRequest(torch.tensor(rows), n_samples=30, ci_level=0.95, seed=0)
    stats = model.predictor.predict(request).stats
    assert isinstance(stats, ClassificationStats)
    return stats.mutual_information


def test_writes_the_threshold_and_keeps_the_rest_of_the_card(
    model_factory: Factory, data: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_factory(card={"target": "label"})
    before = yaml.safe_load((folder / "model.yaml").read_text())
    argv = ["calibrate", str(folder), "--in-data", str(data[0]), "--n-samples", "30"]
    assert main([*argv, "--keep", "0.9"]) == 0
    after = yaml.safe_load((folder / "model.yaml").read_text())
    abstention = after.pop("abstention")
    assert after == before  # weights sha256 and everything else untouched
    scores = _mutual_information(folder, IN_ROWS)
    assert torch.unique(scores).numel() == 36  # no ties: exactly ceil(0.9 * 36) rows kept
    expected = threshold_for_share(scores, 0.9)
    assert abstention == {
        "score": "mutual_information",
        "threshold": float(expected),
        "in_distribution_share": 0.9,
        "calibrated_on": "in.csv",
        "n_samples": 30,
    }
    assert "keeps 91.7% of 36 in-distribution rows" in capsys.readouterr().out
    model = load_model_folder(folder)
    request = PredictionRequest(torch.tensor(IN_ROWS), 30, 0.95, seed=0)
    flags = model.predictor.predict(request).abstain
    assert flags is not None and int(flags.sum()) == 3  # 36 - ceil(0.9 * 36)


def test_ood_data_reports_auroc_of_each_score(
    model_factory: Factory, data: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_factory()
    argv = ["calibrate", str(folder), "--in-data", str(data[0]), "--ood-data", str(data[1])]
    argv += ["--target", "label", "--score", "predictive_entropy", "--n-samples", "30"]
    assert main([*argv, "--json", "--dry-run"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["score"] == "predictive_entropy" and result["out_rows"] == 16
    assert set(result["auroc"]) == {
        "predictive_entropy",
        "mutual_information",
        "variation_ratio",
        "confidence",
    }
    assert all(0.0 <= value <= 1.0 for value in result["auroc"].values())
    assert result["auroc"]["mutual_information"] > 0.5  # far rows disagree more
    assert "abstention" not in (folder / "model.yaml").read_text()  # --dry-run


def test_refuses_regression_models_and_bad_keep(
    model_factory: Factory, data: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_factory("reg", task="regression")
    assert main(["calibrate", str(folder), "--in-data", str(data[0]), "--target", "label"]) == 2
    assert "classification and segmentation models only" in capsys.readouterr().err
    assert main(["calibrate", str(folder), "--in-data", str(data[0]), "--keep", "0"]) == 2


def test_refer_picks_the_threshold_referring_that_share(
    model_factory: Factory, data: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_factory()
    argv = ["calibrate", str(folder), "--in-data", str(data[0]), "--target", "label"]
    assert main([*argv, "--n-samples", "30", "--refer", "0.25", "--dry-run", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    scores = _mutual_information(folder, IN_ROWS)
    assert result["threshold"] == float(torch.sort(scores).values[27 - 1])  # 36 - 9 kept
    assert result["in_kept"] == pytest.approx(27 / 36)
    assert main([*argv, "--refer", "1.0"]) == 2


def test_retained_accuracy_refers_the_fewest_rows_reaching_it(
    model_factory: Factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_factory()
    model = load_model_folder(folder)
    request = PredictionRequest(torch.tensor(IN_ROWS), n_samples=30, ci_level=0.95, seed=0)
    stats = model.predictor.predict(request).stats
    assert isinstance(stats, ClassificationStats)
    labels = model.card.labels
    assert labels is not None
    # label the rows by the prediction, then flip the labels of the 6 most uncertain
    predicted = stats.mean.argmax(-1)
    order = torch.argsort(stats.mutual_information, descending=True)
    truth = predicted.clone()
    truth[order[:6]] = 1 - truth[order[:6]]
    path = tmp_path / "labelled.csv"
    write_csv(
        path, ["a", "b", "y"], [[*r, labels[int(t)]] for r, t in zip(IN_ROWS, truth, strict=True)]
    )
    argv = ["calibrate", str(folder), "--in-data", str(path), "--target", "y", "--n-samples"]
    assert main([*argv, "30", "--retained-accuracy", "1.0", "--dry-run", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["retained_accuracy"] == 1.0 and result["in_kept"] == pytest.approx(30 / 36)
    assert result["threshold"] == float(stats.mutual_information[order[6]])
    assert main([*argv, "30", "--retained-accuracy", "1.0", "--dry-run"]) == 0
    assert "accuracy of the rows kept: 1.0000 (target 1)" in capsys.readouterr().out
