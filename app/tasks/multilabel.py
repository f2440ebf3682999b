"""Multi-label classification: a sigmoid per label over (N, B, K) logits, never a softmax.

Each label is its own Bernoulli: per label the mean probability p̄, its std and interval, the
binary predictive entropy H(p̄), the expected entropy mean_t H(p_t) and their difference, the
mutual information. A label is predicted where p̄ >= the card's ``multilabel.threshold``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel
from torch import Tensor

from app.engine.abstention import RankingScore
from app.engine.acquisition import Strategy
from app.engine.evaluation.multilabel import MultilabelReport, multilabel_report
from app.engine.evaluation.targets import label_set_targets
from app.engine.stats.multilabel import (
    MultilabelStats,
    binary_entropy,
    label_mutual_information,
    multilabel_stats,
)
from app.tasks.base import OutputTensor, RowContext, Task
from app.tasks.classification import sample_rows

if TYPE_CHECKING:
    from app.engine.predictor import Passes, Prediction


class MultilabelRow(BaseModel):
    """Uncertainty of one multi-label row: every list has one value per label (nats)."""

    mean: list[float]
    std: list[float]
    ci_lower: list[float]
    ci_upper: list[float]
    predictive_entropy: list[float]
    expected_entropy: list[float]
    mutual_information: list[float]
    predicted_labels: list[str] | list[int]
    """Labels (or indices without labels) whose mean probability is >= ``threshold``."""
    threshold: float
    samples: list[list[float]] | None = None


class Multilabel(Task):
    """``task: multilabel``: independent labels, one logit each."""

    name = "multilabel"
    strategies: ClassVar[tuple[Strategy, ...]] = ("bald", "entropy")
    """Sums over labels of the per-label mutual information, or of the binary entropy."""

    def output_problem(self, output_shape: list[int], labels: Sequence[str] | None) -> str | None:
        if len(output_shape) != 1:
            shown = ", ".join(map(str, output_shape))
            return f"multilabel output must be (B, K) logits, one per label, got (B, {shown})"
        if labels is not None and len(labels) != output_shape[0]:
            return f"{len(labels)} labels but {output_shape[0]} outputs"
        return None

    def values(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(raw)

    def statistics(
        self, raw: Tensor, values: Tensor, ci_level: float, inputs: Tensor
    ) -> MultilabelStats:
        return multilabel_stats(values, ci_level, self.options.threshold)

    def rows(self, prediction: Prediction, context: RowContext) -> list[BaseModel]:
        stats, labels = prediction.stats, context.labels
        columns = {
            f.name: getattr(stats, f.name).tolist()
            for f in dataclasses.fields(stats)
            if f.name != "predicted"
        }
        samples = sample_rows(prediction)
        rows: list[BaseModel] = []
        for i, predicted in enumerate(stats.predicted.tolist()):
            members = [k for k, on in enumerate(predicted) if on]
            named = [labels[k] for k in members] if labels is not None else members
            rows.append(
                MultilabelRow(
                    **{name: values[i] for name, values in columns.items()},
                    predicted_labels=named,
                    threshold=self.options.threshold,
                    samples=samples[i] if samples is not None else None,
                )
            )
        return rows

    def outputs(self, dims: Sequence[int], conformal: bool) -> list[OutputTensor]:
        return [
            OutputTensor(f.name, "BOOL" if f.name == "predicted" else "FP32", list(dims))
            for f in dataclasses.fields(MultilabelStats)
        ]

    def observations(self, stats: Any) -> dict[str, Tensor]:
        return {
            "predictive_entropy": stats.predictive_entropy.flatten(),
            "mutual_information": stats.mutual_information.flatten(),
        }

    def rank_scores(self, passes: Passes, strategy: Strategy) -> Tensor:
        if strategy == "bald":
            return label_mutual_information(passes.values).sum(dim=-1)
        if strategy == "entropy":
            return binary_entropy(passes.values.mean(dim=0)).sum(dim=-1)
        return super().rank_scores(passes, strategy)

    def parse_targets(
        self, targets: Sequence[Any], labels: Sequence[str] | None, output_shape: list[int]
    ) -> Tensor:
        return label_set_targets(targets, labels, output_shape[0])

    def evaluation(
        self,
        passes: Passes,
        targets: Tensor,
        ci_level: float,
        coverages: Sequence[float],
        ranking_score: RankingScore,
    ) -> dict[str, MultilabelReport]:
        return {"multilabel": multilabel_report(passes.values, targets, self.options.threshold)}
