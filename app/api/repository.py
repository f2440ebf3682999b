"""The Open Inference Protocol's model-repository extension: index, load, unload."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends

from app.api.deps import DataPlaneDep, RepositoryDep, StateDep
from app.errors import ModelControlOffError, ModelNotReadyError
from app.registry.repository import check_model_name

router = APIRouter(prefix="/v2/repository", tags=["repository"])


@router.post("/index")
async def index(repository: RepositoryDep) -> list[dict[str, Any]]:
    """Every model folder with its state: READY, UNAVAILABLE (with the reason) or UNLOADED."""
    entries = {entry.name: entry for entry in repository.entries()}
    answer: list[dict[str, Any]] = []
    for name in sorted(set(entries) | set(repository.folder_names())):
        entry = entries.get(name)
        if entry is None:
            answer.append({"name": name, "state": "UNLOADED", "reason": "not loaded yet"})
        elif entry.model is not None:
            answer.append({"name": name, "version": entry.model.version, "state": "READY"})
        else:
            state = "UNLOADED" if entry.error == "unloaded" else "UNAVAILABLE"
            answer.append({"name": name, "state": state, "reason": entry.error})
    return answer


async def _model_control_on(name: str, state: StateDep) -> None:
    """Load and unload are off unless ``model_control: explicit``; the name is checked before
    anything touches the disk."""
    if state.settings.model_control != "explicit":
        raise ModelControlOffError()
    check_model_name(name)


_CONTROL = [Depends(_model_control_on)]


@router.post("/models/{name}/load", dependencies=_CONTROL)
async def load(name: str, state: StateDep, dataplane: DataPlaneDep) -> dict[str, Any]:
    """Load or reload a model from its folder without restarting the server."""
    entry = await asyncio.to_thread(state.repository.load, name)
    await dataplane.forget(name)
    state.record_models()
    if entry.model is None:
        raise ModelNotReadyError(name, entry.error or "load failed")
    return {"name": name, "version": entry.model.version, "state": "READY"}


@router.post("/models/{name}/unload", dependencies=_CONTROL)
async def unload(name: str, state: StateDep, dataplane: DataPlaneDep) -> dict[str, Any]:
    """Stop serving a model (queued requests for it finish first)."""
    await dataplane.forget(name)
    state.repository.unload(name)
    state.record_models()
    return {"name": name, "state": "UNLOADED"}
