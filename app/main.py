"""The app factory: ``create_app(settings)`` wires settings, models, metrics and routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import torch
from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig

from app import __version__
from app.api import evaluation, health, metrics_route, native, ranking, repository, ui, v2
from app.api.auth import ApiKeys, Role, check_access, load_api_keys
from app.api.errors import install_error_handlers
from app.api.middleware import RequestContextMiddleware
from app.api.state import AppState
from app.config import Settings, load_settings
from app.dataplane import DataPlane
from app.dataplane.process import load_options
from app.dataplane.remote import InferenceClient
from app.engine.allocator import retain_freed_memory
from app.heap import freeze_startup_heap
from app.metrics import build_metrics, multiprocess_dir
from app.registry.repository import ModelRepository

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, freeze_heap: bool = False) -> FastAPI:
    """A FastAPI app serving every model under ``settings.models_dir`` (loaded at start-up).
    ``freeze_heap``: this process only serves (``mcdrop serve``): once started, what start-up
    allocated is frozen out of the garbage collector's walks (:mod:`app.heap`)."""
    settings = settings if settings is not None else load_settings()
    metrics = build_metrics(multiprocess_dir=multiprocess_dir())
    models = ModelRepository(settings.models_dir, load_options(settings))
    remote = _inference_client(settings)
    state = AppState(settings, metrics, models, DataPlane(models, settings, metrics, remote))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        retain_freed_memory(settings.allocator_retain_mib * 2**20)
        if remote is not None:
            await state.dataplane.connect()  # the inference process's models, described
        else:
            models.load_all()
        state.record_models()
        state.started = True
        if freeze_heap:
            freeze_startup_heap()
        logger.info("mcdrop ready: %d model(s)", len(models.ready_models()))
        try:
            yield
        finally:
            state.shutting_down = True
            await state.dataplane.close()
            metrics.close()

    keys = load_api_keys(settings)
    _check_access_settings(settings, keys)
    # The schema and docs follow auth_health: open with the health routes, or behind a key.
    docs_closed = keys.enabled and settings.auth_health
    app = FastAPI(
        title="mcdrop",
        version=__version__,
        summary="Monte Carlo Dropout uncertainty for PyTorch models.",
        lifespan=lifespan,
        telemetry=_telemetry(settings.opentelemetry),
        openapi_url=None if docs_closed else "/openapi.json",
        docs_url=None if docs_closed else "/docs",
        redoc_url=None if docs_closed else "/redoc",
    )
    app.state.mcdrop = state
    app.state.api_keys = keys
    install_error_handlers(app)
    # Without keys there is nothing to check: no dependency at all (each one costs a request).
    predict_auth = [Depends(_require(keys, "predict"))] if keys.enabled else []
    admin_auth = [Depends(_require(keys, "admin"))] if keys.enabled else []
    app.include_router(native.router, dependencies=predict_auth)
    app.include_router(evaluation.router, dependencies=predict_auth)
    app.include_router(ranking.router, dependencies=predict_auth)
    app.include_router(v2.router, dependencies=predict_auth)
    app.include_router(repository.router, dependencies=admin_auth)
    app.include_router(health.router, dependencies=predict_auth if settings.auth_health else [])
    metrics_auth = predict_auth if settings.auth_metrics else []
    app.include_router(metrics_route.router, dependencies=metrics_auth)
    if docs_closed:
        _schema_behind_keys(app, predict_auth)
    if settings.ui:
        app.include_router(ui.build_router(predict_auth))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "x-api-key", "x-request-id"],
            expose_headers=["x-request-id", "retry-after"],
        )
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
        request_timeout_s=settings.request_timeout_s,
    )
    return app


def create_app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes: settings from the environment and config file."""
    return create_app(load_settings(), freeze_heap=True)


def _inference_client(settings: Settings) -> InferenceClient | None:
    """The connection to ``mcdrop serve``'s inference process, if this app samples there."""
    if settings.inference_socket is None:
        return None
    if settings.model_control == "explicit":
        raise ValueError("model_control explicit loads models in-process: no inference_socket")
    return InferenceClient(settings.inference_socket, settings.request_timeout_s)


def check_startup(settings: Settings) -> None:
    """What :func:`create_app` refuses to start with (an unreadable key file, keys required but
    none: OSError / ValueError), checked before ``mcdrop serve`` starts any process: a worker
    process failing at start-up would be restarted by its supervisor, again and again."""
    _check_access_settings(settings, load_api_keys(settings), warn=False)


def _check_access_settings(settings: Settings, keys: ApiKeys, warn: bool = True) -> None:
    """Refuse to start without keys when they are required; warn when anyone may load code."""
    if settings.require_auth and not keys.enabled:
        raise ValueError(f"require_auth is on but {settings.api_key_file} holds no key")
    if warn and settings.model_control == "explicit" and not keys.has_admin:
        logger.warning(
            "model_control is explicit and no admin API key is set: anyone who can reach the "
            "server can load and unload models, and loading a folder runs its Python code"
        )


def _schema_behind_keys(app: FastAPI, auth: list[Any]) -> None:
    """``/openapi.json`` for callers with a key (a browser page cannot send one, so no /docs)."""

    @app.get("/openapi.json", include_in_schema=False, dependencies=auth)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())


def _telemetry(enabled: bool) -> TelemetryConfig:
    return {"tracing": enabled, "metrics": enabled, "logs": enabled}


def _require(keys: ApiKeys, role: Role) -> Callable[[Request], Coroutine[Any, Any, None]]:
    async def dependency(request: Request) -> None:
        check_access(keys, request, role)

    return dependency
