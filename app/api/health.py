"""Liveness and readiness, Open Inference Protocol style: the status code is the answer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.api.auth import ApiKeys, caller_role
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
async def model_ready(name: str, repository: RepositoryDep, request: Request) -> JSONResponse:
    """200 when the model is loaded; 503 (with the load error for callers with a key, when
    keys are on: it can name files); 404 for an unknown model."""
    entry = repository.entry(name)
    if entry.ready:
        return JSONResponse({"name": name, "ready": True})
    body: dict[str, object] = {"name": name, "ready": False}
    keys: ApiKeys = request.app.state.api_keys
    if not keys.enabled or caller_role(keys, request) is not None:
        body["reason"] = entry.error
    return JSONResponse(body, status_code=503)
