"""Request and response bodies of the native ``/v1`` API."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api.mc_options import MCOptions
from app.api.model_schemas import AuditInfo as AuditInfo

# Defined without torch for the command-line client; re-exported here with the other bodies.
from app.api.model_schemas import DropoutInfo as DropoutInfo
from app.api.model_schemas import ModelInfo as ModelInfo
from app.api.model_schemas import ModelList as ModelList
from app.api.model_schemas import UnsampledInfo as UnsampledInfo
from app.engine.abstention import RankingScore
from app.engine.evaluation import (
    DEFAULT_COVERAGES,
    ClassificationReport,
    Evaluation,
    RegressionReport,
)
from app.engine.evaluation.conformal import ConformalReport
from app.engine.evaluation.multilabel import MultilabelReport
from app.engine.evaluation.segmentation import SegmentationReport
from app.registry.card import TaskName
from app.tasks.classification import ClassificationRow as ClassificationRow
from app.tasks.multilabel import MultilabelRow as MultilabelRow
from app.tasks.regression import RegressionRow as RegressionRow
from app.tasks.segmentation import SegmentationRow as SegmentationRow
from app.tasks.segmentation_maps import MapFormat
from app.tasks.token_classification import TokenRow as TokenRow

MAX_COVERAGES = 100
"""Most coverages one evaluation reports (each costs a pass over the ranked rows)."""


class PredictRequest(MCOptions):
    """A batch of raw input rows and the Monte Carlo options."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] = Field(
        min_length=1,
        description="Input rows, each a (nested) list of numbers of the model's input shape.",
    )
    return_samples: bool = Field(default=False, description="Also return every pass's output.")
    maps: MapFormat = Field(
        default="json",
        description="Segmentation: per-pixel maps as nested lists (json), base64 PNG or .npy, "
        "or none (the per-image summaries alone).",
    )


class PredictResponse(BaseModel):
    """Mean predictions with their uncertainty, one entry per input row."""

    model: str
    version: str
    task: TaskName
    n_samples: int
    seed: int
    ci_level: float
    mc_standard_error: float | None = Field(
        description="Largest MC standard error of the returned means (null when N = 1)."
    )
    converged: bool | None = Field(
        default=None, description='With "auto": whether the tolerance was met before the cap.'
    )
    predictions: (
        list[ClassificationRow]
        | list[RegressionRow]
        | list[MultilabelRow]
        | list[TokenRow]
        | list[SegmentationRow]
    )
    prediction_id: str | None = Field(
        default=None,
        description="Names this prediction in a later `/feedback` (by the same API key); absent "
        "when the server holds no predictions for feedback.",
    )


class ErrorBody(BaseModel):
    """The one error envelope."""

    error: str


class EvaluateRequest(MCOptions):
    """Labelled rows to score the model's predictions and uncertainty on."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] = Field(
        min_length=1, description="Input rows, each a (nested) list of the model's input shape."
    )
    targets: list[Any] = Field(
        min_length=1,
        description="One per input row: a class label or index (classification), a number or "
        "a list of one number per output (regression).",
    )
    coverages: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field(
        default=list(DEFAULT_COVERAGES),
        min_length=1,
        max_length=MAX_COVERAGES,
        description="Coverages at which selective accuracy and risk are reported.",
    )
    ranking_score: RankingScore = Field(
        default="predictive_entropy",
        description="Uncertainty score ordering rows for the selective metrics.",
    )


class EvaluateResponse(BaseModel):
    """Every metric of one evaluation; the report of the model's task is set."""

    model: str
    version: str
    task: TaskName
    n_samples: int
    seed: int
    ci_level: float
    rows: int
    classification: ClassificationReport | None = None
    regression: RegressionReport | None = None
    multilabel: MultilabelReport | None = None
    segmentation: SegmentationReport | None = None
    conformal: ConformalReport | None = Field(
        default=None,
        description="Coverage and mean width / set size of the model's conformal rule, if any.",
    )

    @classmethod
    def of(cls, model: str, version: str, task: str, evaluation: Evaluation) -> EvaluateResponse:
        """The answer for one evaluation of one model."""
        return cls.model_validate(
            {"model": model, "version": version, "task": task, **vars(evaluation)}
        )


class FeedbackRequest(BaseModel):
    """Labels for rows the server predicted: by the prediction's id, or by the rows."""

    model_config = ConfigDict(extra="forbid")

    prediction_id: str | None = Field(
        default=None,
        max_length=64,
        description="The `prediction_id` a /v1 prediction returned (only the API key that made "
        "the prediction can label it); `targets` then holds one target per row of it.",
    )
    inputs: list[Any] | None = Field(
        default=None,
        min_length=1,
        description="Or the input rows themselves, each matched to the latest prediction of "
        "them made by the same API key.",
    )
    targets: list[Any] = Field(
        min_length=1,
        description="One per row: a class label or index, or a number (list for several outputs).",
    )

    @model_validator(mode="after")
    def _one_way(self) -> FeedbackRequest:
        if (self.prediction_id is None) == (self.inputs is None):
            raise ValueError("give exactly one of 'prediction_id' or 'inputs'")
        return self


class IntervalCheck(BaseModel):
    """How many labelled rows fell in one kind of served interval or set."""

    covered: int
    checked: int
    level: float
    """Mean nominal level of the checked rows."""


class FeedbackResponse(BaseModel):
    """What the labels said about the served predictions."""

    model: str
    rows: int
    intervals: dict[str, IntervalCheck]
    log_likelihood: float
    """Mean log-likelihood of the targets (nats; Gaussian with the predictive mean and
    variance for regression, log p̄ of the true class for classification)."""
    brier: float | None = None
