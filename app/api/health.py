"""Liveness and readiness, Open Inference Protocol style: the status code is the answer."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import RepositoryDep, StateDep

router = APIRouter(tags=["health"])


@router.get("/v2/health/live")
async def live() -> dict[str, bool]:
    """200 while the process can answer at all."""
    return {"live": True}


@router.get("/v2/health/ready", response_model=None)
async def ready(state: StateDep) -> JSONResponse:
    """200 when start-up is done and at least one model serves; 503 with a reason otherwise."""
    if state.ready:
        return JSONResponse({"ready": True})
    if state.shutting_down:
        reason = "shutting down"
    elif not state.started:
        reason = "starting up"
    else:
        reason = "no model could be loaded"
    return JSONResponse({"ready": False, "reason": reason}, status_code=503)


@router.get("/v2/models/{name}/ready", response_model=None)
async def model_ready(name: str, repository: RepositoryDep) -> JSONResponse:
    """200 when the model is loaded; 503 with the load error; 404 for an unknown model."""
    entry = repository.entry(name)
    if entry.ready:
        return JSONResponse({"name": name, "ready": True})
    return JSONResponse({"name": name, "ready": False, "reason": entry.error}, status_code=503)
