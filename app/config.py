"""The one typed settings object.

Precedence, highest first: explicit overrides (e.g. CLI flags), ``MCDROP_*`` environment
variables, the YAML config file (``config/default.yaml`` unless ``MCDROP_CONFIG`` or ``--config``
names another), then the defaults below. Nothing is read at import time.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = Path("config/default.yaml")
_config_file: ContextVar[Path | None] = ContextVar("mcdrop_config_file", default=None)


class Settings(BaseSettings):
    """Server settings. Every field can be set as ``MCDROP_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="MCDROP_", extra="forbid")

    host: str = "127.0.0.1"
    """Interface uvicorn binds to (``0.0.0.0`` in the container)."""

    port: int = Field(default=8080, ge=1, le=65535)
    """TCP port uvicorn listens on."""

    models_dir: Path = Path("models")
    """Model repository: one folder per model, each with a ``model.yaml`` card and weights."""

    workers: int = Field(default=1, ge=1)
    """Worker processes uvicorn starts. Above 1, each worker loads every model and metrics are
    summed over the workers through ``metrics_dir``."""

    metrics_dir: Path | None = None
    """Folder where worker processes share Prometheus metrics (exported to them as
    ``PROMETHEUS_MULTIPROC_DIR``) when ``workers`` > 1; its metric files are deleted at start.
    None: ``PROMETHEUS_MULTIPROC_DIR`` if set, else a new temporary folder."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level of mcdrop and uvicorn."""

    max_rows_per_request: int = Field(default=256, ge=1)
    """Most input rows one prediction request may carry."""

    max_rows_per_evaluation: int = Field(default=10000, ge=1)
    """Most labelled rows one ``/v1/models/{name}/evaluate`` request may carry."""

    max_sample_rows: int = Field(default=16384, ge=1)
    """Most rows (input rows x MC samples) pushed through the model in one forward chunk;
    bounds peak memory of a sampling run."""

    default_ci_level: float = Field(default=0.95, gt=0.0, lt=1.0)
    """Interval level used when a request gives no ``ci_level``."""

    torch_threads: int = Field(default=0, ge=0)
    """Intra-op threads torch may use; 0 keeps torch's own default."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where models run: ``auto`` picks CUDA when a GPU is visible, else the CPU."""

    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Precision of the weights and activations (statistics are always computed in float32)."""

    max_batch_rows: int = Field(default=8192, ge=1)
    """Most folded rows (input rows x samples) one fused run of concurrent requests may hold."""

    max_wait_ms: float = Field(default=0.0, ge=0.0)
    """The longest the oldest waiting request waits for others to fuse with before its run
    starts. 0: no wait; requests that queue while a run is going are fused anyway, and on a
    CPU the idle inference thread during a wait cost more than the fusion won (see
    docs/benchmarks.md)."""

    max_queue: int = Field(default=256, ge=1)
    """Requests that may wait per model; past it the server answers 503 with Retry-After."""

    request_timeout_s: float = Field(default=30.0, gt=0.0)
    """Deadline of one prediction request; past it the server answers 504 and drops its work."""

    default_tolerance: float = Field(default=0.01, gt=0.0)
    """Adaptive N (``"n_samples": "auto"``): target MC standard error when none is given."""

    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    """Largest request body accepted; larger ones get a 413 before they are read whole."""

    max_request_sample_rows: int = Field(default=262144, ge=1)
    """Most input rows x MC samples one request may ask for (bounds memory per request)."""

    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """API keys; empty (and no key file) means no authentication. ``KEY`` may predict;
    ``KEY:admin`` may also use the model-repository routes."""

    api_key_file: Path | None = None
    """File with one API key per line (same ``KEY[:admin]`` form; ``#`` starts a comment)."""

    auth_health: bool = False
    """Require an API key on the health routes too (probes usually call them without one)."""

    auth_metrics: bool = False
    """Require an API key on ``/metrics`` too."""

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins allowed by CORS; empty turns CORS off."""

    log_format: Literal["json", "text"] = "json"
    """Request and server logs as one JSON object per line, or as plain text."""

    opentelemetry: bool = False
    """FastAPI's OpenTelemetry bridge: request spans and metrics to the OpenTelemetry providers
    the process configures. Off by default (mcdrop exports Prometheus metrics itself, and the
    bridge costs every request a provider check even when no provider is configured)."""

    shutdown_delay_s: float = Field(default=0.0, ge=0.0)
    """On SIGTERM, report not-ready and keep serving this long before draining (lets load
    balancers stop sending traffic first)."""

    max_evaluation_values: int = Field(default=10_000_000, ge=1)
    """Most values (rows x MC samples x model outputs) one evaluation request may hold: every
    pass of every row is kept to score it, so this bounds an evaluation's memory (see the
    README's worst-case memory). Larger requests are refused up front with 422."""

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """``MCDROP_API_KEYS=k1,k2:admin`` as well as a YAML list."""
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _config_file.get()
        if path is None:
            return (init_settings, env_settings)
        yaml_source = YamlConfigSettingsSource(settings_cls, yaml_file=path)
        return (init_settings, env_settings, yaml_source)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings from overrides, environment, the YAML file and defaults (that order)."""
    path = _resolve_config_file(config_file)
    token = _config_file.set(path)
    try:
        return Settings(**overrides)
    finally:
        _config_file.reset(token)


def _resolve_config_file(config_file: Path | str | None) -> Path | None:
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        return path
    from_env = os.environ.get("MCDROP_CONFIG")
    if from_env:
        return _resolve_config_file(from_env)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None
