"""Regression: (N, B, D) means per pass, or (N, B, 2D) means then log-variances."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, Field
from torch import Tensor

from app.engine.abstention import RankingScore
from app.engine.acquisition import REGRESSION_STRATEGIES, Strategy, predictive_std
from app.engine.conformal import ConformalOutput, ConformalRule, apply_rule
from app.engine.evaluation.report import regression_report
from app.engine.evaluation.targets import regression_targets
from app.engine.stats import RegressionStats, regression_stats
from app.tasks.base import OutputTensor, RowContext, Task
from app.tasks.classification import sample_rows

if TYPE_CHECKING:
    from app.engine.predictor import Passes, Prediction

CONFORMAL_OUTPUTS = ("conformal_lower", "conformal_upper")


class RegressionRow(BaseModel):
    """Uncertainty of one regressed row; each list has one value per output."""

    mean: list[float]
    epistemic_variance: list[float]
    aleatoric_variance: list[float]
    variance: list[float]
    std: list[float]
    ci_lower: list[float]
    ci_upper: list[float]
    pi_lower: list[float]
    pi_upper: list[float]
    conformal_lower: list[float] | None = Field(
        default=None,
        description="Split-conformal band mean ± q·std at `conformal_level`; absent for models "
        "without a conformal section in their card.",
    )
    conformal_upper: list[float] | None = None
    conformal_level: float | None = None
    samples: list[list[float]] | None = None


class Regression(Task):
    """``task: regression``: the card's ``tau`` or a variance head gives the aleatoric part."""

    name = "regression"
    strategies = REGRESSION_STRATEGIES
    feedback = True

    def output_problem(self, output_shape: list[int], labels: Sequence[str] | None) -> str | None:
        if len(output_shape) != 1:
            shown = ", ".join(map(str, output_shape))
            return (
                f"regression output must be (B, D) values, got (B, {shown}); a dense output "
                "needs a dense task"
            )
        if self.options.variance_head and output_shape[-1] % 2:
            return f"a variance head needs 2*D outputs (mean, log-variance), got {output_shape[-1]}"
        return None

    def _split(self, raw: Tensor) -> tuple[Tensor, float | Tensor]:
        if not self.options.variance_head:
            assert self.options.noise_variance is not None
            return raw, self.options.noise_variance
        d = raw.shape[-1] // 2
        return raw[..., :d], torch.exp(raw[..., d:])

    def values(self, raw: Tensor) -> Tensor:
        return self._split(raw)[0]

    def noise(self, raw: Tensor) -> float | Tensor | None:
        return self._split(raw)[1]

    def value_dims(self, output_shape: Sequence[int]) -> list[int]:
        dims = list(output_shape)
        if self.options.variance_head:
            dims[-1] //= 2
        return dims

    def statistics(
        self, raw: Tensor, values: Tensor, ci_level: float, inputs: Tensor
    ) -> RegressionStats:
        return regression_stats(values, self._split(raw)[1], ci_level)

    def conformal(
        self, stats: Any, rule: ConformalRule | None, seed: int = 0
    ) -> ConformalOutput | None:
        return apply_rule(rule, stats.mean, stats.std) if rule is not None else None

    def rows(self, prediction: Prediction, context: RowContext) -> list[BaseModel]:
        stats = prediction.stats
        columns = {
            f.name: getattr(stats, f.name).flatten(1).tolist() for f in dataclasses.fields(stats)
        }
        samples = sample_rows(prediction)
        conformal = prediction.conformal
        bands = None
        if conformal is not None and conformal.lower is not None and conformal.upper is not None:
            bands = conformal.lower.flatten(1).tolist(), conformal.upper.flatten(1).tolist()
        rows: list[BaseModel] = []
        for i in range(len(columns["mean"])):
            row = RegressionRow(
                **{name: values[i] for name, values in columns.items()},
                samples=samples[i] if samples is not None else None,
            )
            if bands is not None and conformal is not None:
                row.conformal_lower, row.conformal_upper = bands[0][i], bands[1][i]
                row.conformal_level = conformal.level
            rows.append(row)
        return rows

    def outputs(self, dims: Sequence[int], conformal: bool) -> list[OutputTensor]:
        names = [f.name for f in dataclasses.fields(RegressionStats)]
        if conformal:
            names += CONFORMAL_OUTPUTS
        return [OutputTensor(name, "FP32", list(dims)) for name in names]

    def output_tensor(self, prediction: Prediction, name: str) -> Tensor:
        if name in CONFORMAL_OUTPUTS:
            conformal = prediction.conformal
            assert conformal is not None
            found = conformal.lower if name == "conformal_lower" else conformal.upper
            assert found is not None
            return found
        return super().output_tensor(prediction, name)

    def observations(self, stats: Any) -> dict[str, Tensor]:
        return {"regression_std": stats.std}

    def rank_scores(self, passes: Passes, strategy: Strategy) -> Tensor:
        if strategy != "std":
            raise ValueError(f"strategy '{strategy}' does not apply to regression; use 'std'")
        assert passes.noise_variance is not None
        return predictive_std(passes.values, passes.noise_variance)

    def parse_targets(
        self, targets: Sequence[Any], labels: Sequence[str] | None, output_shape: list[int]
    ) -> Tensor:
        return regression_targets(targets, self.value_dims(output_shape)[-1])

    def evaluation(
        self,
        passes: Passes,
        targets: Tensor,
        ci_level: float,
        coverages: Sequence[float],
        ranking_score: RankingScore,
    ) -> dict[str, Any]:
        assert passes.noise_variance is not None
        return {
            "regression": regression_report(passes.values, passes.noise_variance, targets, ci_level)
        }
