"""Evaluation over HTTP: labelled rows in, calibration and accuracy metrics out."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.deps import DataPlaneDep
from app.api.disconnect import unless_disconnected
from app.api.schemas import EvaluateRequest, EvaluateResponse

router = APIRouter(prefix="/v1", tags=["evaluation"])


@router.post("/models/{name}/evaluate", name="v1_evaluate")
async def evaluate(
    name: str, body: EvaluateRequest, request: Request, dataplane: DataPlaneDep
) -> EvaluateResponse:
    """Accuracy, calibration and selective metrics (or regression scores) on labelled rows;
    the work stops when the client disconnects."""
    work = dataplane.evaluate(
        name,
        body.inputs,
        body.targets,
        body.options(),
        endpoint="v1_evaluate",
        coverages=body.coverages,
        ranking_score=body.ranking_score,
    )
    model, result = await unless_disconnected(request, work)
    return EvaluateResponse.of(model.name, model.version, model.card.task, result)
