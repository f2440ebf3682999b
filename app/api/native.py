"""The native JSON API: list models, describe one, predict with uncertainty."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.deps import CallerDep, DataPlaneDep, RepositoryDep
from app.api.encoding import answer_values, serialise
from app.api.images import PREDICT_OPENAPI, PredictBody
from app.api.model_schemas import InputInfo
from app.api.schemas import (
    AuditInfo,
    ClassificationRow,
    DropoutInfo,
    FeedbackRequest,
    FeedbackResponse,
    IntervalCheck,
    ModelInfo,
    ModelList,
    PredictResponse,
    RegressionRow,
    UnsampledInfo,
)
from app.engine.conformal import ConformalOutput
from app.engine.module_sites import SAMPLED_MODULE_NOTE
from app.engine.predictor import Prediction
from app.engine.selection import describe_choice
from app.engine.stats import ClassificationStats, RegressionStats
from app.inputs.base import InputDescription
from app.registry.auditing import Audit
from app.registry.repository import ModelEntry
from app.registry.served import ServedModel

router = APIRouter(prefix="/v1", tags=["native"])


@router.get("/models")
async def list_models(repository: RepositoryDep) -> ModelList:
    """Every model in the repository, ready or not."""
    return ModelList(models=[model_info(entry) for entry in repository.entries()])


@router.get("/models/{name}")
async def describe_model(name: str, repository: RepositoryDep) -> ModelInfo:
    """One model's card, dropout layers and limits."""
    return model_info(repository.entry(name))


@router.post(
    "/models/{name}/predict",
    response_model=PredictResponse,
    response_model_exclude_none=True,
    name="v1_predict",
    openapi_extra=PREDICT_OPENAPI,
)
async def predict(
    name: str, body: PredictBody, caller: CallerDep, dataplane: DataPlaneDep
) -> Response:
    """Mean prediction and uncertainty for each input row from N MC dropout passes; held for
    feedback under the returned ``prediction_id``."""
    model, prediction, prediction_id = await dataplane.predict_held(
        name, body.inputs, body.options(body.return_samples), "v1_predict", owner=caller
    )

    def encode() -> str:
        response = predict_response(model, prediction, prediction_id)
        # Serialised here, once: returning the model would make FastAPI validate it again.
        return response.model_dump_json(exclude_none=True)

    content = await serialise(encode, answer_values(prediction))
    return Response(content, media_type="application/json")


@router.post("/models/{name}/feedback", name="v1_feedback")
async def feedback(
    name: str, body: FeedbackRequest, caller: CallerDep, dataplane: DataPlaneDep
) -> FeedbackResponse:
    """Labels for the caller's recent predictions (by prediction id or by rows): checks
    whether the served intervals and sets held, and counts it in the live-coverage metrics."""
    model, score = await dataplane.record_feedback(
        name,
        body.targets,
        "v1_feedback",
        owner=caller,
        prediction_id=body.prediction_id,
        rows=body.inputs,
    )
    return FeedbackResponse(
        model=model.name,
        rows=score.rows,
        intervals={
            interval: IntervalCheck(
                covered=covered,
                checked=checked,
                level=round(nominal / checked, 9) if checked else 0.0,
            )
            for interval, (covered, checked, nominal) in score.checks.items()
        },
        log_likelihood=_mean(score.log_likelihood),
        brier=_mean(score.brier) if score.brier is not None else None,
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def predict_response(
    model: ServedModel, prediction: Prediction, prediction_id: str | None = None
) -> PredictResponse:
    """The v1 answer of one prediction (a non-finite MC standard error is left out)."""
    error = prediction.mc_standard_error
    return PredictResponse(
        model=model.name,
        version=model.version,
        task=model.card.task,
        n_samples=prediction.n_samples,
        seed=prediction.seed,
        ci_level=prediction.ci_level,
        mc_standard_error=error if math.isfinite(error) else None,
        converged=prediction.converged,
        predictions=prediction_rows(model, prediction),
        prediction_id=prediction_id,
    )


def request_id_of(request: Request) -> str | None:
    """The id the request-id middleware gave this request."""
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


def input_info(described: InputDescription) -> InputInfo:
    """The input kind's description as the v1 metadata gives it."""
    return InputInfo(
        kind=described.kind,
        widget=described.widget,
        shape=described.shape,
        dtype=described.dtype,
        summary=described.summary,
        range=list(described.range) if described.range is not None else None,
        max_length=described.max_length,
        max_characters=described.max_characters,
        lengths=described.lengths,
        grid=described.grid,
        preprocessing=described.preprocessing,
    )


def model_info(entry: ModelEntry) -> ModelInfo:
    """Describe an entry; a model that failed to load shows its error."""
    model = entry.model
    if model is None:
        return ModelInfo(name=entry.name, version=None, task=None, ready=False, error=entry.error)
    card, audit = model.card, model.audit
    described = model.input_kind.describe()
    return ModelInfo(
        name=card.name,
        version=card.version,
        task=card.task,
        ready=True,
        description=card.description,
        input_shape=card.input.shape,
        input_dtype=card.input.dtype,
        output_shape=model.output_shape,
        labels=card.labels,
        target=card.target,
        feature_names=card.feature_names,
        default_n_samples=card.n_samples.default,
        max_n_samples=card.n_samples.max,
        input_type=described.kind,
        max_length=described.max_length,
        preprocessing=described.preprocessing,
        input=input_info(described),
        mc_dropout=describe_choice(card.mc_dropout),
        dropout_layers=len(model.dropout_layers),
        dropout=[
            DropoutInfo(
                name=s.name,
                kind=s.kind,
                p=s.p,
                site=s.role,
                sampled=s.sampled,
                note=SAMPLED_MODULE_NOTE if s.role == "module" else None,
            )
            for s in model.dropout_sites
        ],
        prefix_fraction=model.split.prefix_fraction,
        prefix_note=model.split.reason,
        warnings=model.warnings,
        unsampled=[UnsampledInfo(**vars(u)) for u in audit.unsampled] if audit else [],
        audit=_audit_info(audit),
    )


def _audit_info(audit: Audit | None) -> AuditInfo | None:
    if audit is None:
        return None
    report, gap = audit.report, audit.report.gap
    return AuditInfo(
        passes=report.passes,
        seconds=round(report.seconds, 4),
        reference_std=gap.reference**0.5 if gap else None,
        sampled_std=gap.sampled**0.5 if gap else None,
        z=round(gap.z, 2) if gap and math.isfinite(gap.z) else None,
        note=report.note,
    )


def prediction_rows(
    model: ServedModel, prediction: Prediction
) -> list[ClassificationRow] | list[RegressionRow]:
    """One response object per input row."""
    stats = prediction.stats
    samples = (
        prediction.samples.transpose(0, 1).tolist() if prediction.samples is not None else None
    )
    if isinstance(stats, ClassificationStats):
        abstain = prediction.abstain.tolist() if prediction.abstain is not None else None
        rows: list[ClassificationRow] | list[RegressionRow] = _classification_rows(
            stats, model.card.labels, samples, abstain
        )
    else:
        rows = _regression_rows(stats, samples)
    if prediction.conformal is not None:
        _add_conformal(rows, prediction.conformal, model.card.labels)
    return rows


def _add_conformal(
    rows: list[ClassificationRow] | list[RegressionRow],
    conformal: ConformalOutput,
    labels: list[str] | None,
) -> None:
    """Set each row's conformal band or prediction set (from the card's conformal rule)."""
    lower = conformal.lower.flatten(1).tolist() if conformal.lower is not None else None
    upper = conformal.upper.flatten(1).tolist() if conformal.upper is not None else None
    sets = conformal.sets.tolist() if conformal.sets is not None else None
    for i, row in enumerate(rows):
        if isinstance(row, RegressionRow) and lower is not None and upper is not None:
            row.conformal_lower, row.conformal_upper = lower[i], upper[i]
            row.conformal_level = conformal.level
        elif isinstance(row, ClassificationRow) and sets is not None:
            row.conformal_level = conformal.level
            members = [c for c, inside in enumerate(sets[i]) if inside]
            row.prediction_set = [labels[c] for c in members] if labels is not None else members


def _classification_rows(
    stats: ClassificationStats,
    labels: list[str] | None,
    samples: list[list[list[float]]] | None,
    abstain: list[bool] | None = None,
) -> list[ClassificationRow]:
    classes = stats.predicted_class.tolist()
    mean, std = stats.mean.tolist(), stats.std.tolist()
    lower, upper = stats.ci_lower.tolist(), stats.ci_upper.tolist()
    confidence = stats.confidence.tolist()
    total, aleatoric = stats.predictive_entropy.tolist(), stats.expected_entropy.tolist()
    epistemic, ratio = stats.mutual_information.tolist(), stats.variation_ratio.tolist()
    return [
        ClassificationRow(
            mean=mean[i],
            std=std[i],
            ci_lower=lower[i],
            ci_upper=upper[i],
            predicted_class=cls,
            label=labels[cls] if labels is not None else None,
            confidence=confidence[i],
            predictive_entropy=total[i],
            expected_entropy=aleatoric[i],
            mutual_information=epistemic[i],
            variation_ratio=ratio[i],
            abstain=abstain[i] if abstain is not None else None,
            samples=samples[i] if samples is not None else None,
        )
        for i, cls in enumerate(classes)
    ]


def _regression_rows(
    stats: RegressionStats, samples: list[list[list[float]]] | None
) -> list[RegressionRow]:
    columns = {
        name: getattr(stats, name).flatten(1).tolist()
        for name in (
            "mean",
            "epistemic_variance",
            "aleatoric_variance",
            "variance",
            "std",
            "ci_lower",
            "ci_upper",
            "pi_lower",
            "pi_upper",
        )
    }
    rows = len(columns["mean"])
    return [
        RegressionRow(
            **{name: values[i] for name, values in columns.items()},
            samples=samples[i] if samples is not None else None,
        )
        for i in range(rows)
    ]
