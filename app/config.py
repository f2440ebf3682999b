"""The one typed settings object.

Precedence, highest first: explicit overrides (e.g. CLI flags), ``MCDROP_*`` environment
variables, the YAML config file (``config/default.yaml`` unless ``MCDROP_CONFIG`` or ``--config``
names another), then the defaults below. Nothing is read at import time.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
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
