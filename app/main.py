"""The app factory: ``create_app(settings)`` wires settings, models, metrics and routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI

from app import __version__
from app.api import evaluation, health, metrics_route, native
from app.api.errors import install_error_handlers
from app.config import Settings, load_settings
from app.dataplane import DataPlane
from app.metrics import Metrics, build_metrics
from app.registry.loading import LoadOptions
from app.registry.repository import ModelRepository
from app.state import AppState

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A FastAPI app serving every model under ``settings.models_dir`` (loaded at start-up)."""
    settings = settings if settings is not None else load_settings()
    metrics = build_metrics()
    repository = ModelRepository(
        settings.models_dir, LoadOptions(max_sample_rows=settings.max_sample_rows)
    )
    state = AppState(settings, metrics, repository, DataPlane(repository, settings, metrics))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        repository.load_all()
        _record_models(metrics, repository)
        state.started = True
        logger.info("mcdrop ready: %d model(s)", len(repository.ready_models()))
        try:
            yield
        finally:
            state.shutting_down = True
            state.dataplane.close()

    app = FastAPI(
        title="mcdrop",
        version=__version__,
        summary="Monte Carlo Dropout uncertainty for PyTorch models.",
        lifespan=lifespan,
    )
    app.state.mcdrop = state
    install_error_handlers(app)
    app.include_router(native.router)
    app.include_router(evaluation.router)
    app.include_router(health.router)
    app.include_router(metrics_route.router)
    return app


def _record_models(metrics: Metrics, repository: ModelRepository) -> None:
    for entry in repository.entries():
        metrics.model_ready.labels(entry.name).set(1 if entry.ready else 0)
        if entry.model is not None:
            metrics.model_load_seconds.labels(entry.name).set(entry.model.load_seconds)
