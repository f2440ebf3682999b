"""Evaluating a loaded model: target parsing and the sampled report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from app.engine.evaluation import classification_report, evaluate, parse_targets
from app.engine.predictor import PredictionRequest, TaskSpec
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
