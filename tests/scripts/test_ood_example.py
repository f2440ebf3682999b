"""The bundled OOD example: its splits, and the committed model reproduces the docs' numbers."""

from __future__ import annotations

import re
from types import ModuleType

import numpy as np
import pytest
import torch

from app.engine.evaluation import auroc
from app.engine.predictor import PredictionRequest
from app.engine.stats import ClassificationStats
from app.registry.loading import load_model_folder
from tests.support import REPO_ROOT, load_script

DOC = REPO_ROOT / "docs" / "ood-example.md"
FOLDER = REPO_ROOT / "models-extra" / "digits-0to4-mlp"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    """scripts/ood_example.py as a module."""
    return load_script("ood_example")


def _doc_value(label: str) -> str:
    match = re.search(rf"^\| {re.escape(label)} \| ([0-9.]+%?) \|$", DOC.read_text(), re.M)
    assert match is not None, label
    return match.group(1)


def test_splits_keep_unseen_digits_out_of_training(example: ModuleType) -> None:
    data = example.splits()
    assert {int(d) for d in data["fit"].y} == {0, 1, 2, 3, 4}
    assert set(data["calibration"].y.tolist()) <= {0, 1, 2, 3, 4}
    assert set(data["test_out"].y.tolist()) == {5, 6, 7, 8, 9}
    sizes = [len(data[k].y) for k in ("fit", "calibration", "test_in", "test_out")]
    assert sizes == [540, 135, 226, 224]
    fit = {row.tobytes() for row in data["fit"].x}
    assert not any(row.tobytes() in fit for row in data["calibration"].x)


def test_committed_model_reproduces_the_documented_numbers(example: ModuleType) -> None:
    model = load_model_folder(FOLDER)
    assert model.card.labels == ["0", "1", "2", "3", "4"] and model.card.abstention is not None
    data = example.splits()
    stats, flags = [], []
    for part in ("test_in", "test_out"):
        request = PredictionRequest(torch.from_numpy(data[part].x), 100, 0.95, seed=0)
        prediction = model.predictor.predict(request)
        assert isinstance(prediction.stats, ClassificationStats) and prediction.abstain is not None
        stats.append(prediction.stats)
        flags.append(prediction.abstain)
    for key, label in (
        ("mutual_information", "mutual information (N = 100)"),
        ("predictive_entropy", "predictive entropy (N = 100)"),
    ):
        area = auroc(getattr(stats[0], key).double(), getattr(stats[1], key).double())
        # The doc prints 3 decimals; float rounding may swap two nearly tied rows
        # (1 / (n_in n_out) each), so one unit of the last printed digit either way.
        assert abs(float(area) - float(_doc_value(label))) <= 0.001
    for flag, label in zip(
        flags, ("test digits 0-4 (seen)", "test digits 5-9 (never seen)"), strict=True
    ):
        # The doc prints one decimal of a percentage; a row at the threshold may flip.
        documented = float(_doc_value(label).rstrip("%")) / 100
        assert abs(float(flag.double().mean()) - documented) <= 0.0005 + 1 / len(flag)
    assert np.isclose(model.card.abstention.in_distribution_share, 0.95)
