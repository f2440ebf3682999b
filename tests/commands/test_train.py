"""``mcdrop train`` writes a folder that the server loads unchanged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_diabetes, load_iris

from app.cli import main
from app.commands.tabular import write_csv
from app.registry.loading import load_model_folder
from app.registry.torch_loader import sha256_of

FAST = ["--epochs", "8", "--hidden", "16", "--batch-size", "32"]


@pytest.fixture
def iris_csv(tmp_path: Path) -> Path:
    data = load_iris()
    names = [str(data.target_names[t]) for t in data.target]
    path = tmp_path / "iris.csv"
    write_csv(
        path,
        ["sl", "sw", "pl", "pw", "species"],
        [[*r, n] for r, n in zip(data.data.tolist(), names, strict=True)],
    )
    return path


def test_classifier_folder_is_served_unchanged(
    iris_csv: Path,
    tmp_path: Path,
    client_for: Callable[..., TestClient],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "models" / "iris-mlp"
    argv = ["train", "--data", str(iris_csv), "--target", "species", "--task", "classification"]
    assert main([*argv, "--out", str(out), *FAST, "--lr", "0.01"]) == 0
    captured = capsys.readouterr()
    assert "[final] p=0.1 l=0.01 tau=1 [" in captured.err and "8/8" in captured.err
    assert "trained iris-mlp: 150 rows" in captured.out
    model = load_model_folder(out)
    assert model.card.labels == ["setosa", "versicolor", "virginica"]
    assert model.card.feature_names == ["sl", "sw", "pl", "pw"]  # the header, target left out
    assert model.card.weights.sha256 == sha256_of(out / "model.safetensors")
    client = client_for(out.parent)
    body = {"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], "n_samples": 20, "seed": 0}
    rows = client.post("/v1/models/iris-mlp/predict", json=body).json()["predictions"]
    assert [row["label"] for row in rows] == ["setosa", "virginica"]
    assert client.get("/v1/models/iris-mlp").json()["feature_names"] == ["sl", "sw", "pl", "pw"]
    assert main(["evaluate", str(out), "--data", str(iris_csv)]) == 0  # card target: species
    assert "accuracy" in capsys.readouterr().out


def test_regression_grid_search_is_reproducible(tmp_path: Path) -> None:
    data = load_diabetes()
    path = tmp_path / "diabetes.csv"
    rows = [
        [*x, y] for x, y in zip(data.data[:120].tolist(), data.target[:120].tolist(), strict=True)
    ]
    write_csv(path, [f"x{i}" for i in range(10)] + ["y"], rows)
    argv = ["train", "--data", str(path), "--target", "y", "--task", "regression", *FAST]
    argv += ["--tau", "0.5", "2", "--dropout", "0.1", "--length-scale", "0.01", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    first, second = load_model_folder(tmp_path / "a"), load_model_folder(tmp_path / "b")
    assert first.card.weights.sha256 == second.card.weights.sha256
    assert len(first.card.training["grid_search"]) == 2
    assert first.card.regression is not None and first.card.regression.tau is not None


def test_refuses_to_overwrite_and_bad_columns(
    iris_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    base = ["train", "--data", str(iris_csv), "--task", "classification", "--out", str(out)]
    assert main([*base, "--target", "species", *FAST, "--quiet"]) == 0
    assert main([*base, "--target", "species", *FAST, "--quiet"]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert main([*base, "--target", "colour", "--force"]) == 2
    assert "no column 'colour'" in capsys.readouterr().err
    assert main([*base, "--target", "species", "--tau", "2", "--force"]) == 2
    assert "regression only" in capsys.readouterr().err
    assert main([*base, "--target", "species", "--noise", "heteroscedastic", "--force"]) == 2
    assert "regression only" in capsys.readouterr().err


def _diabetes_csv(tmp_path: Path, rows: int = 200) -> Path:
    data = load_diabetes()
    path = tmp_path / "diabetes.csv"
    cells = [
        [*x, y] for x, y in zip(data.data[:rows].tolist(), data.target[:rows].tolist(), strict=True)
    ]
    write_csv(path, [f"x{i}" for i in range(10)] + ["y"], cells)
    return path


def test_regression_fits_tau_by_default_and_reports_the_validation_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _diabetes_csv(tmp_path)
    argv = ["train", "--data", str(path), "--target", "y", "--task", "regression", *FAST]
    assert main([*argv, "--quiet", "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "validation (40 rows): RMSE " in out and "95% PI coverage " in out
    card = load_model_folder(tmp_path / "m").card
    assert card.training["tau_source"] == "fitted"
    grid = [(point["dropout"], point["length_scale"]) for point in card.training["grid_search"]]
    assert grid == [(0.05, 0.01), (0.05, 1.0), (0.1, 0.01), (0.1, 1.0)]
    assert all("fitted_tau" in point for point in card.training["grid_search"])
    chosen = max(card.training["grid_search"], key=lambda p: p["validation_log_likelihood"])
    assert card.regression is not None and card.regression.tau == chosen["fitted_tau"]
    assert card.training["validation"]["log_likelihood"] == chosen["validation_log_likelihood"]


def test_heteroscedastic_writes_a_variance_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _diabetes_csv(tmp_path)
    argv = ["train", "--data", str(path), "--target", "y", "--task", "regression", *FAST]
    argv += ["--noise", "heteroscedastic", "--quiet", "--dropout", "0.1"]
    assert main([*argv, "--out", str(tmp_path / "h")]) == 0
    assert "variance head" in capsys.readouterr().out
    card = load_model_folder(tmp_path / "h").card
    assert card.regression is not None and card.regression.variance_head
    assert card.architecture.kwargs["variance_head"] is True
    assert main([*argv, "--tau", "2", "--out", str(tmp_path / "x")]) == 2
    assert "exclude each other" in capsys.readouterr().err
