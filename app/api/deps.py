"""Dependency aliases: handlers ask for what they need by type."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.api.auth import caller_identity
from app.api.state import AppState
from app.config import Settings
from app.dataplane import DataPlane
from app.metrics import Metrics
from app.registry.repository import ModelRepository


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.mcdrop
    return state


async def get_state(request: Request) -> AppState:
    return _state(request)


# Async on purpose: FastAPI runs plain-def dependencies in a thread pool, a thread hop per
# dependency per request.


async def get_dataplane(request: Request) -> DataPlane:
    return _state(request).dataplane


async def get_repository(request: Request) -> ModelRepository:
    return _state(request).repository


async def get_metrics(request: Request) -> Metrics:
    return _state(request).metrics


async def get_caller(request: Request) -> str | None:
    """The caller's identity for owned resources (``auth.caller_identity``)."""
    return caller_identity(request.app.state.api_keys, request)


async def get_settings(request: Request) -> Settings:
    return _state(request).settings


StateDep = Annotated[AppState, Depends(get_state)]
DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
RepositoryDep = Annotated[ModelRepository, Depends(get_repository)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CallerDep = Annotated[str | None, Depends(get_caller)]
