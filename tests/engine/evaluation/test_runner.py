"""Evaluating a loaded model: target parsing and the sampled report."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from app.engine.evaluation import CoveragePoint, classification_report, evaluate, parse_targets
from app.engine.evaluation.runner import all_finite, score
from app.engine.predictor import Passes, PredictionRequest, TaskSpec
from app.errors import InvalidInputError
from app.registry.loading import load_model_folder

CLASSIFY = TaskSpec("classification")


def test_class_targets_by_label_or_index() -> None:
    labels = ["left", "right"]
    parsed = parse_targets(["right", 0, "1", 1.0], CLASSIFY, labels, [2])
    assert parsed.tolist() == [1, 0, 1, 1] and parsed.dtype == torch.long


@pytest.mark.parametrize("bad", ["up", 2, -1, 0.5, True, None])
def test_bad_class_targets_name_the_entry(bad: object) -> None:
    with pytest.raises(InvalidInputError, match=r"targets\[1\]"):
        parse_targets([0, bad], CLASSIFY, ["left", "right"], [2])


def test_regression_targets_as_numbers_or_lists() -> None:
    spec = TaskSpec("regression", noise_variance=1.0)
    assert parse_targets([1, 2.5], spec, None, [1]).tolist() == [[1.0], [2.5]]
    assert parse_targets([[1, 2]], spec, None, [2]).tolist() == [[1.0, 2.0]]
    head = TaskSpec("regression", variance_head=True)
    assert parse_targets([[1, 2]], head, None, [4]).shape == (1, 2)
    with pytest.raises(InvalidInputError, match=r"targets\[0\]: has 1 values"):
        parse_targets([3.0], spec, None, [2])
    with pytest.raises(InvalidInputError, match="finite"):
        parse_targets([float("nan")], spec, None, [1])


def test_evaluate_reports_on_the_sampled_passes(model_factory: Callable[..., Path]) -> None:
    model = load_model_folder(model_factory())
    inputs = torch.tensor([[1.0, -2.0], [0.5, 0.5], [-1.0, 2.0], [2.0, 1.0]])
    request = PredictionRequest(inputs, n_samples=50, ci_level=0.9, seed=3)
    targets = torch.tensor([0, 1, 1, 0])
    result = evaluate(model.predictor, request, targets, coverages=(0.5, 1.0))
    assert (result.n_samples, result.seed, result.ci_level, result.rows) == (50, 3, 0.9, 4)
    assert result.regression is None and result.classification is not None
    passes = model.predictor.sample_passes(request)
    assert result.classification == classification_report(passes.values, targets, (0.5, 1.0))


def test_evaluate_refuses_a_target_count_mismatch(model_factory: Callable[..., Path]) -> None:
    model = load_model_folder(model_factory())
    request = PredictionRequest(torch.zeros(3, 2), n_samples=5, ci_level=0.9, seed=0)
    with pytest.raises(InvalidInputError, match="2 entries for 3 input rows"):
        evaluate(model.predictor, request, torch.tensor([0, 1]))


def test_regression_evaluation_uses_the_card_tau(model_factory: Callable[..., Path]) -> None:
    model = load_model_folder(model_factory("reg", task="regression"))
    inputs = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    request = PredictionRequest(inputs, n_samples=40, ci_level=0.8, seed=1)
    result = evaluate(model.predictor, request, torch.tensor([[3.0, 5.0], [1.0, -1.0]]))
    assert result.regression is not None and result.classification is None
    assert result.regression.pi_level == 0.8
    passes = model.predictor.sample_passes(request)
    assert passes.noise_variance == 0.25  # 1 / tau, tau = 4


def test_scores_refuse_rows_that_are_not_finite() -> None:
    passes = Passes(torch.tensor([[[0.0], [float("inf")]]]), 1.0, 0)  # N = 1, B = 2
    with pytest.raises(InvalidInputError, match=r"^inputs\[1\]: the model's output"):
        score(passes, torch.zeros(2, 1, dtype=torch.float64), 0.9)
    probs = torch.tensor([[[0.5, 0.5], [float("nan"), 0.5]]])
    with pytest.raises(InvalidInputError, match=r"^inputs\[1\]"):
        score(Passes(probs, None, 0), torch.tensor([0, 1]), 0.9)
    # without the server's range check (the CLI, a float64 model): 1e200 squares to infinity
    finite = Passes(torch.zeros(3, 2, 1, dtype=torch.float64), 1.0, 0)
    targets = torch.tensor([[1.0], [1e200]], dtype=torch.float64)
    with pytest.raises(InvalidInputError, match=r"^targets\[1\]: is too far"):
        score(finite, targets, 0.9)
    report = score(finite, torch.tensor([[1.0], [-1.0]], dtype=torch.float64), 0.9).regression
    assert report is not None and report.rmse == 1.0  # all passes 0, |residual| 1
    assert report.log_likelihood == pytest.approx(-0.5 * math.log(2 * math.pi) - 0.5)


def test_all_finite_walks_the_whole_report() -> None:
    point = CoveragePoint(level=0.5, coverage=0.5)
    assert all_finite([point, {"a": (1.0, None, "x", 3)}])
    assert not all_finite({"a": [CoveragePoint(level=0.5, coverage=float("inf"))]})
    assert not all_finite(point.__class__(level=float("nan"), coverage=0.0))
