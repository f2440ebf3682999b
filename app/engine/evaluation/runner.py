"""Evaluating a model on labelled rows: check the targets, sample, score."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from app.engine.abstention import RankingScore
from app.engine.conformal import ConformalRule, apply_rule
from app.engine.evaluation.conformal import ConformalReport, conformal_report, summary
from app.engine.evaluation.report import (
    DEFAULT_COVERAGES,
    ClassificationReport,
    RegressionReport,
    classification_report,
    regression_report,
)
from app.engine.finite import check_passes_finite
from app.engine.predictor import Passes, PredictionRequest, Predictor, TaskSpec
from app.errors import InvalidInputError

_MAX_DIGITS = 18
"""Most digits of a class index written as a string."""


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
            f"targets[{row}]", f"{_shown(value)} is not a class: expected {known}0..{classes - 1}"
        )
    return index


def _as_integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    # ASCII digits only, and few of them: "²" is a digit to isdigit() but not to int(), and
    # int() refuses strings of more than 4,300 digits.
    text = value.strip().removeprefix("-") if isinstance(value, str) else ""
    if text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS:
        return int(value)
    return None


def _regression_target(value: Any, width: int, row: int) -> list[float]:
    values = value if isinstance(value, list) else [value]
    numbers = [_finite_float(v) for v in values]
    if any(v is None for v in numbers):
        raise InvalidInputError(f"targets[{row}]", f"must be finite numbers, got {_shown(value)}")
    if len(numbers) != width:
        raise InvalidInputError(
            f"targets[{row}]", f"has {len(numbers)} values, the model has {width} outputs"
        )
    return [v for v in numbers if v is not None]


def _finite_float(value: Any) -> float | None:
    """``value`` as a finite float, or None (not a number, a bool, infinite, or an integer too
    large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


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
    return score(
        passes, targets, request.ci_level, coverages, ranking_score, predictor.spec.conformal
    )


def score(
    passes: Passes,
    targets: Tensor,
    ci_level: float,
    coverages: Sequence[float] = DEFAULT_COVERAGES,
    ranking_score: RankingScore = "predictive_entropy",
    conformal: ConformalRule | None = None,
) -> Evaluation:
    """Score sampled passes (N, B, ...) against `targets` (B, ...) from `parse_targets`; with
    the model's conformal rule, also its band's or sets' coverage. Every number of the answer
    is finite: a row whose passes are not is refused as ``inputs[i]``, a target whose scores
    are not as ``targets[i]`` (InvalidInputError)."""
    rows = int(passes.values.shape[1])
    if targets.shape[0] != rows:
        raise InvalidInputError("targets", f"has {targets.shape[0]} entries for {rows} input rows")
    check_passes_finite(passes.values, passes.noise_variance)
    classification = regression = None
    if passes.noise_variance is None:
        classification = classification_report(passes.values, targets, coverages, ranking_score)
    else:
        regression = regression_report(passes.values, passes.noise_variance, targets, ci_level)
    evaluation = Evaluation(
        n_samples=int(passes.values.shape[0]),
        seed=passes.seed,
        ci_level=ci_level,
        rows=rows,
        classification=classification,
        regression=regression,
        conformal=_conformal(conformal, passes, targets),
    )
    if not all_finite(evaluation):
        # Every row's scores were finite (checked per row), so their mean overflowed.
        raise InvalidInputError(
            "targets", "the rows' scores together exceed what float64 holds: evaluate fewer rows"
        )
    return evaluation


def all_finite(value: object) -> bool:
    """Whether every float in a report (dataclasses, lists, dicts of them) is finite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return all(all_finite(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, list | tuple):
        return all(all_finite(item) for item in value)
    if isinstance(value, dict):
        return all(all_finite(item) for item in value.values())
    return True


def _conformal(
    rule: ConformalRule | None, passes: Passes, targets: Tensor
) -> ConformalReport | None:
    if rule is None:
        return None
    mean, std = summary(passes)
    return conformal_report(apply_rule(rule, mean, std), targets)


def _shown(value: Any) -> str:
    """A value as an error message shows it: at most 40 characters of its repr."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
