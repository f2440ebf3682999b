"""Single-label classification: softmax per pass over (N, B, C) logits."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, Field
from torch import Tensor

from app.engine.abstention import AbstentionRule, RankingScore, uncertainty_score
from app.engine.acquisition import CLASSIFICATION_STRATEGIES, Strategy, classification_score
from app.engine.conformal import ConformalOutput, ConformalRule, apply_rule
from app.engine.evaluation.report import classification_report
from app.engine.evaluation.targets import class_targets
from app.engine.stats import ClassificationStats, classification_stats
from app.tasks.base import OutputTensor, RowContext, Task

if TYPE_CHECKING:
    from app.engine.predictor import Passes, Prediction

PER_ROW = (
    "predicted_class",
    "confidence",
    "predictive_entropy",
    "expected_entropy",
    "mutual_information",
    "variation_ratio",
)
"""Statistics with one value per row; the others have one per class."""


class ClassificationRow(BaseModel):
    """Uncertainty of one classified row (entropies in nats)."""

    mean: list[float]
    std: list[float]
    ci_lower: list[float]
    ci_upper: list[float]
    predicted_class: int
    label: str | None
    confidence: float
    predictive_entropy: float
    expected_entropy: float
    mutual_information: float
    variation_ratio: float
    abstain: bool | None = Field(
        default=None,
        description="True when the row's uncertainty exceeds the model's calibrated threshold; "
        "absent for models without an abstention section in their card.",
    )
    prediction_set: list[str] | list[int] | None = Field(
        default=None,
        description="Conformal prediction set (labels, or class indices without labels) at "
        "`conformal_level`; absent for models without a conformal section in their card.",
    )
    conformal_level: float | None = None
    shift_score: float | None = Field(
        default=None,
        description="Mahalanobis distance of the row's features to the nearest training class "
        "(training stds); absent for models without a shift section in their card.",
    )
    shift_flag: bool | None = Field(
        default=None,
        description="True when the input is unlike the training data (shift score above the "
        "card's threshold, or an input value far outside its training range); part of abstain.",
    )
    samples: list[list[float]] | None = None


def sample_rows(prediction: Prediction) -> list[Any] | None:
    """Each row's passes (B, N, ...) as lists, where the request asked for them."""
    samples = prediction.samples
    return samples.transpose(0, 1).tolist() if samples is not None else None


class Classification(Task):
    """``task: classification``: (B, C) logits, softmax per pass."""

    name = "classification"
    strategies = CLASSIFICATION_STRATEGIES
    feedback = True

    def output_problem(self, output_shape: list[int], labels: Sequence[str] | None) -> str | None:
        if len(output_shape) != 1:
            shown = ", ".join(map(str, output_shape))
            return f"classification output must be (B, C) logits, got (B, {shown})"
        if labels is not None and len(labels) != output_shape[0]:
            return f"{len(labels)} labels but {output_shape[0]} outputs"
        return None

    def values(self, raw: Tensor) -> Tensor:
        return torch.softmax(raw, dim=-1)

    def statistics(
        self, raw: Tensor, values: Tensor, ci_level: float, inputs: Tensor
    ) -> ClassificationStats:
        return classification_stats(values, ci_level)

    def abstain(self, stats: Any, rule: AbstentionRule | None) -> Tensor | None:
        if rule is None:
            return None
        return uncertainty_score(stats, rule.score) > rule.threshold

    def conformal(
        self, stats: Any, rule: ConformalRule | None, seed: int = 0
    ) -> ConformalOutput | None:
        return apply_rule(rule, stats.mean, None, seed) if rule is not None else None

    def rows(self, prediction: Prediction, context: RowContext) -> list[BaseModel]:
        stats, labels = prediction.stats, context.labels
        samples = sample_rows(prediction)
        abstain = prediction.abstain.tolist() if prediction.abstain is not None else None
        columns = {f.name: getattr(stats, f.name).tolist() for f in dataclasses.fields(stats)}
        rows: list[BaseModel] = []
        for i, cls in enumerate(columns["predicted_class"]):
            answer = ClassificationRow(
                **{name: values[i] for name, values in columns.items()},
                label=labels[cls] if labels is not None else None,
                abstain=abstain[i] if abstain is not None else None,
                samples=samples[i] if samples is not None else None,
            )
            rows.append(answer)
        shift = prediction.shift
        if shift is not None:
            for row, score, flag in zip(
                rows, shift.score.tolist(), shift.flag.tolist(), strict=True
            ):
                assert isinstance(row, ClassificationRow)
                row.shift_score, row.shift_flag = score, flag
        conformal = prediction.conformal
        if conformal is not None and conformal.sets is not None:
            for row, inside in zip(rows, conformal.sets.tolist(), strict=True):
                assert isinstance(row, ClassificationRow)
                members = [c for c, member in enumerate(inside) if member]
                row.prediction_set = [labels[c] for c in members] if labels is not None else members
                row.conformal_level = conformal.level
        return rows

    def outputs(self, dims: Sequence[int], conformal: bool) -> list[OutputTensor]:
        tensors = [
            OutputTensor(
                f.name,
                "INT64" if f.name == "predicted_class" else "FP32",
                [] if f.name in PER_ROW else list(dims),
            )
            for f in dataclasses.fields(ClassificationStats)
        ]
        if conformal:
            tensors.append(OutputTensor("prediction_set", "BOOL", list(dims)))
        return tensors

    def output_tensor(self, prediction: Prediction, name: str) -> Tensor:
        if name == "prediction_set":
            assert prediction.conformal is not None and prediction.conformal.sets is not None
            return prediction.conformal.sets
        return super().output_tensor(prediction, name)

    def observations(self, stats: Any) -> dict[str, Tensor]:
        return {
            "predictive_entropy": stats.predictive_entropy,
            "mutual_information": stats.mutual_information,
        }

    def rank_scores(self, passes: Passes, strategy: Strategy) -> Tensor:
        return classification_score(strategy, passes.values)

    def parse_targets(
        self, targets: Sequence[Any], labels: Sequence[str] | None, output_shape: list[int]
    ) -> Tensor:
        return class_targets(targets, labels, output_shape[0])

    def evaluation(
        self,
        passes: Passes,
        targets: Tensor,
        ci_level: float,
        coverages: Sequence[float],
        ranking_score: RankingScore,
    ) -> dict[str, Any]:
        return {
            "classification": classification_report(
                passes.values, targets, coverages, ranking_score
            )
        }
