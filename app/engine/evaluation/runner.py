"""Evaluating a model on labelled rows: check the targets, sample, score."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor

from app.engine.abstention import RankingScore
from app.engine.conformal import ConformalRule, apply_rule
from app.engine.evaluation.conformal import ConformalReport, conformal_report, summary
from app.engine.evaluation.multilabel import MultilabelReport
from app.engine.evaluation.report import (
    DEFAULT_COVERAGES,
    ClassificationReport,
    RegressionReport,
    classification_report,
    regression_report,
)
from app.engine.evaluation.segmentation import SegmentationReport
from app.engine.finite import check_passes_finite
from app.engine.predictor import Passes, PredictionRequest, Predictor, TaskSpec
from app.errors import InvalidInputError

if TYPE_CHECKING:
    from app.tasks import Task


@dataclass(frozen=True)
class Evaluation:
    """The report of one evaluation run; exactly one of the task reports is set."""

    n_samples: int
    seed: int
    ci_level: float
    rows: int
    classification: ClassificationReport | None = None
    regression: RegressionReport | None = None
    multilabel: MultilabelReport | None = None
    segmentation: SegmentationReport | None = None
    conformal: ConformalReport | None = None
    """Where the model has a conformal rule: its coverage and width or set size."""


def parse_targets(
    targets: Sequence[Any], spec: TaskSpec, labels: Sequence[str] | None, output_shape: list[int]
) -> Tensor:
    """Targets as a tensor, parsed by the spec's task: class indices (B,) long, regression
    values (B, D) float64, label sets (B, K) 0/1.

    A class is its label (a string in `labels`) or its index; a regression target is a number
    (one output) or a list of D numbers; a label set the list of labels that apply. Errors
    name the offending entry (``targets[3]``).
    """
    # Imported here: app.tasks imports this package (its reports), which imports this module.
    from app.tasks import TaskOptions, build_task

    options = TaskOptions(
        spec.noise_variance, spec.variance_head, spec.threshold, spec.uncertainty_threshold
    )
    return build_task(spec.task, options).parse_targets(targets, labels, output_shape)


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
        passes,
        targets,
        request.ci_level,
        coverages,
        ranking_score,
        predictor.spec.conformal,
        predictor.task,
    )


def score(
    passes: Passes,
    targets: Tensor,
    ci_level: float,
    coverages: Sequence[float] = DEFAULT_COVERAGES,
    ranking_score: RankingScore = "predictive_entropy",
    conformal: ConformalRule | None = None,
    task: Task | None = None,
) -> Evaluation:
    """Score sampled passes (N, B, ...) against `targets` (B, ...) from the task's
    ``parse_targets`` by the task's metrics (None: classification where the passes have no
    noise, else regression); with the model's conformal rule, also its band's or sets'
    coverage. Every number of the answer
    is finite: a row whose passes are not is refused as ``inputs[i]``, a target whose scores
    are not as ``targets[i]`` (InvalidInputError)."""
    rows = int(passes.values.shape[1])
    if targets.shape[0] != rows:
        raise InvalidInputError("targets", f"has {targets.shape[0]} entries for {rows} input rows")
    check_passes_finite(passes.values, passes.noise_variance)
    if task is not None:
        reports = task.evaluation(passes, targets, ci_level, coverages, ranking_score)
    elif passes.noise_variance is None:
        reports = {
            "classification": classification_report(
                passes.values, targets, coverages, ranking_score
            )
        }
    else:
        reports = {
            "regression": regression_report(passes.values, passes.noise_variance, targets, ci_level)
        }
    evaluation = Evaluation(
        n_samples=int(passes.values.shape[0]),
        seed=passes.seed,
        ci_level=ci_level,
        rows=rows,
        conformal=_conformal(conformal, passes, targets),
        **reports,
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
