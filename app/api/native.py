"""The native JSON API: list models, describe one, predict with uncertainty."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from app.api.deps import CallerDep, DataPlaneDep, RepositoryDep
from app.api.encoding import answer_values, serialise
from app.api.images import PREDICT_OPENAPI, PredictBody
from app.api.model_schemas import FileInfo, InputInfo
from app.api.schemas import (
    AuditInfo,
    DropoutInfo,
    FeedbackRequest,
    FeedbackResponse,
    IntervalCheck,
    ModelInfo,
    ModelList,
    PredictResponse,
    UnsampledInfo,
)
from app.engine.module_sites import SAMPLED_MODULE_NOTE
from app.engine.predictor import Prediction
from app.engine.selection import describe_choice
from app.errors import NotAcceptableError
from app.inputs.base import InputDescription
from app.registry.auditing import Audit
from app.registry.repository import ModelEntry
from app.registry.served import ServedModel
from app.registry.shift_file import shift_features_note
from app.tasks import RowContext
from app.tasks.base import MapFormat

router = APIRouter(prefix="/v1", tags=["native"])

DEFAULT_OPACITY = 0.6
"""Opacity of the uncertainty heatmap of a rendered (image/png) answer."""


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
    name: str,
    body: PredictBody,
    caller: CallerDep,
    dataplane: DataPlaneDep,
    request: Request,
    opacity: Annotated[float, Query(ge=0.0, le=1.0)] = DEFAULT_OPACITY,
) -> Response:
    """Mean prediction and uncertainty for each input row from N MC dropout passes; held for
    feedback under the returned ``prediction_id``. With ``Accept: image/png`` (segmentation)
    the answer is the images with their masks and uncertainty heatmaps (``opacity``)."""
    picture = wants_png(request.headers.get("accept", ""))
    model, prediction, prediction_id = await dataplane.predict_held(
        name, body.inputs, body.options(body.return_samples), "v1_predict", owner=caller
    )
    if picture:
        drawn = await serialise(
            lambda: model.task.render_png(prediction, opacity), answer_values(prediction)
        )
        if drawn is None:
            raise NotAcceptableError(f"a {model.card.task} answer has no image/png form")
        return Response(drawn, media_type="image/png")

    def encode() -> str:
        response = predict_response(model, prediction, prediction_id, body.inputs, body.maps)
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


def wants_png(accept: str) -> bool:
    """Whether an Accept header prefers a picture: its first media type is image/png."""
    first = accept.split(",")[0].split(";")[0].strip().lower()
    return first == "image/png"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def predict_response(
    model: ServedModel,
    prediction: Prediction,
    prediction_id: str | None = None,
    rows: Sequence[Any] = (),
    maps: MapFormat = "json",
) -> PredictResponse:
    """The v1 answer of one prediction (a non-finite MC standard error is left out); ``rows``
    are the request's rows as sent, ``maps`` how a dense task writes its maps."""
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
        predictions=prediction_rows(model, prediction, rows, maps),
        prediction_id=prediction_id,
    )


def request_id_of(request: Request) -> str | None:
    """The id the request-id middleware gave this request."""
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


def input_info(described: InputDescription) -> InputInfo:
    """The input kind's description as the v1 metadata gives it."""
    files = described.files
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
        parameters=described.extra or None,
        files=None if files is None else FileInfo(**dataclasses.asdict(files)),
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
        shift_features=shift_features_note(model),
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
    model: ServedModel, prediction: Prediction, rows: Sequence[Any] = (), maps: MapFormat = "json"
) -> list[BaseModel]:
    """One response object per input row, by the model's task (``rows``: the request's rows
    as sent, for tasks that point into them; ``maps``: a dense task's map format)."""
    return model.task.rows(prediction, RowContext(model.card.labels, rows, maps))
