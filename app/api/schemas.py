"""Request and response bodies of the native ``/v1`` API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api.mc_options import MCOptions
from app.engine.abstention import RankingScore
from app.engine.evaluation import (
    DEFAULT_COVERAGES,
    ClassificationReport,
    Evaluation,
    RegressionReport,
)

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
    samples: list[list[float]] | None = None


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
    samples: list[list[float]] | None = None


class PredictResponse(BaseModel):
    """Mean predictions with their uncertainty, one entry per input row."""

    model: str
    version: str
    task: Literal["classification", "regression"]
    n_samples: int
    seed: int
    ci_level: float
    mc_standard_error: float | None = Field(
        description="Largest MC standard error of the returned means (null when N = 1)."
    )
    converged: bool | None = Field(
        default=None, description='With "auto": whether the tolerance was met before the cap.'
    )
    predictions: list[ClassificationRow] | list[RegressionRow]


class DropoutInfo(BaseModel):
    """One dropout site of a model."""

    name: str
    kind: str
    p: float
    site: Literal["attention", "hidden", "functional"] = "hidden"
    """``attention``: attention probabilities; ``functional``: an F.dropout call in a forward."""
    sampled: bool = True
    """Whether MC passes draw masks for it (the card's ``mc_dropout`` chooses)."""


class ModelInfo(BaseModel):
    """What a client needs to know to call a model."""

    name: str
    version: str | None
    task: str | None
    ready: bool
    error: str | None = None
    description: str | None = None
    input_shape: list[int] | None = None
    input_dtype: str | None = None
    output_shape: list[int] | None = None
    labels: list[str] | None = None
    target: str | None = None
    default_n_samples: int | None = None
    max_n_samples: int | None = None
    input_type: Literal["tensor", "text", "image"] | None = None
    max_length: int | None = Field(default=None, description="Text models: tokens per text.")
    preprocessing: str | None = Field(
        default=None, description="Image models: what the server does to each image."
    )
    mc_dropout: str | None = Field(
        default=None, description="Sampled dropout: all, head (after the encoder) or names."
    )
    dropout_layers: int = Field(default=0, description="Dropout sites sampled.")
    dropout: list[DropoutInfo] = Field(default_factory=list)
    prefix_fraction: float = 0.0
    prefix_note: str | None = None
    warnings: list[str] = Field(default_factory=list)


class ModelList(BaseModel):
    """Every model in the repository."""

    models: list[ModelInfo]


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
    """Every metric of one evaluation; `classification` or `regression` is set by task."""

    model: str
    version: str
    task: Literal["classification", "regression"]
    n_samples: int
    seed: int
    ci_level: float
    rows: int
    classification: ClassificationReport | None = None
    regression: RegressionReport | None = None

    @classmethod
    def of(cls, model: str, version: str, task: str, evaluation: Evaluation) -> EvaluateResponse:
        """The answer for one evaluation of one model."""
        return cls.model_validate(
            {"model": model, "version": version, "task": task, **vars(evaluation)}
        )
