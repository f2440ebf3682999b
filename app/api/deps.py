"""Dependency aliases: handlers ask for what they need by type."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.dataplane import DataPlane
from app.metrics import Metrics
from app.registry.repository import ModelRepository
from app.state import AppState


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.mcdrop
    return state


def get_dataplane(request: Request) -> DataPlane:
    return get_state(request).dataplane


def get_repository(request: Request) -> ModelRepository:
    return get_state(request).repository


def get_metrics(request: Request) -> Metrics:
    return get_state(request).metrics


def get_settings(request: Request) -> Settings:
    return get_state(request).settings


StateDep = Annotated[AppState, Depends(get_state)]
DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
RepositoryDep = Annotated[ModelRepository, Depends(get_repository)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
