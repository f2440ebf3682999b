"""Evaluating a model on labelled rows: check the targets, sample, score."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from app.engine.abstention import RankingScore
from app.engine.conformal import apply_rule
from app.engine.evaluation.conformal import ConformalReport, conformal_report, summary
from app.engine.evaluation.report import (
    DEFAULT_COVERAGES,
    ClassificationReport,
    RegressionReport,
    classification_report,
    regression_report,
)
from app.engine.predictor import Passes, PredictionRequest, Predictor, TaskSpec
from app.errors import InvalidInputError


@dataclass(frozen=True)
class Evaluation:
    """The report of one evaluation run; exactly one of the two reports is set."""

    n_samples: int
    seed: int
    ci_level: float
    rows: int
    classification: ClassificationReport | None = None
    regression: RegressionReport | None = None
    conformal: ConformalReport | None = None
    """Where the model has a conformal rule: its coverage and width or set size."""


def parse_targets(
    targets: Sequence[Any], spec: TaskSpec, labels: Sequence[str] | None, output_shape: list[int]
) -> Tensor:
    """Targets as a tensor: class indices (B,) long, or regression values (B, D) float64.

    A class is its label (a string in `labels`) or its index; a regression target is a number
    (one output) or a list of D numbers. Errors name the offending entry (``targets[3]``).
    """
    if spec.task == "classification":
        classes = output_shape[0]
        return torch.tensor(
            [_class_index(value, labels, classes, i) for i, value in enumerate(targets)],
            dtype=torch.long,
        )
    width = output_shape[-1] // 2 if spec.variance_head else output_shape[-1]
    return torch.tensor(
        [_regression_target(value, width, i) for i, value in enumerate(targets)],
        dtype=torch.float64,
    )


def _class_index(value: Any, labels: Sequence[str] | None, classes: int, row: int) -> int:
    if labels is not None and isinstance(value, str) and value in labels:
        return labels.index(value)
    index = _as_integer(value)
    if index is None or not 0 <= index < classes:
        known = f"one of {list(labels)} or " if labels is not None else ""
        raise InvalidInputError(
            f"targets[{row}]", f"{value!r} is not a class: expected {known}0..{classes - 1}"
        )
    return index


def _as_integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _regression_target(value: Any, width: int, row: int) -> list[float]:
    values = value if isinstance(value, list) else [value]
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) != len(values) or not all(math.isfinite(v) for v in numbers):
        raise InvalidInputError(f"targets[{row}]", f"must be finite numbers, got {value!r}")
    if len(numbers) != width:
        raise InvalidInputError(
            f"targets[{row}]", f"has {len(numbers)} values, the model has {width} outputs"
        )
    return [float(v) for v in numbers]


def evaluate(
    predictor: Predictor,
    request: PredictionRequest,
    targets: Tensor,
    coverages: Sequence[float] = DEFAULT_COVERAGES,
    ranking_score: RankingScore = "predictive_entropy",
) -> Evaluation:
    """Sample the request's rows and score them against `targets` (from `parse_targets`)."""
    rows = int(request.inputs.shape[0])
    if targets.shape[0] != rows:
        raise InvalidInputError("targets", f"has {targets.shape[0]} entries for {rows} input rows")
    passes = predictor.sample_passes(request)
    classification = regression = None
    if passes.noise_variance is None:
        classification = classification_report(passes.values, targets, coverages, ranking_score)
    else:
        regression = regression_report(
            passes.values, passes.noise_variance, targets, request.ci_level
        )
    return Evaluation(
        n_samples=request.n_samples,
        seed=passes.seed,
        ci_level=request.ci_level,
        rows=rows,
        classification=classification,
        regression=regression,
        conformal=_conformal(predictor, passes, targets),
    )


def _conformal(predictor: Predictor, passes: Passes, targets: Tensor) -> ConformalReport | None:
    rule = predictor.spec.conformal
    if rule is None:
        return None
    mean, std = summary(passes)
    return conformal_report(apply_rule(rule, mean, std), targets)
