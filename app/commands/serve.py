"""``mcdrop serve``: serve every model in the models directory with uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from app.config import Settings

APP_FACTORY = "app.main:create_app_from_env"
"""What each worker process imports and calls when ``workers`` > 1."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` sub-command."""
    serve = commands.add_parser("serve", help="serve every model in the models directory")
    serve.add_argument("--host", help="interface to bind (settings: host)")
    serve.add_argument("--port", type=int, help="TCP port (settings: port)")
    serve.add_argument("--config", type=Path, help="YAML settings file (config/default.yaml)")
    serve.add_argument("--models-dir", type=Path, help="model repository (settings: models_dir)")
    serve.add_argument("--workers", type=int, help="worker processes (settings: workers)")
    serve.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load the settings (flags > environment > file > defaults) and run uvicorn."""
    import uvicorn

    from app.config import load_settings

    flags = {
        "host": args.host,
        "port": args.port,
        "models_dir": args.models_dir,
        "workers": args.workers,
    }
    overrides: dict[str, Any] = {key: value for key, value in flags.items() if value is not None}
    try:
        settings = load_settings(args.config, **overrides)
    except (FileNotFoundError, ValueError) as exc:
        print(f"mcdrop: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if settings.workers > 1:
        _prepare_workers(settings)
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
        )
        return 0
    from app.main import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
    )
    return 0


def _prepare_workers(settings: Settings) -> None:
    """Shared metrics folder and settings for worker processes, before any of them starts.

    Workers build their own settings from the environment, so every resolved setting is
    exported as ``MCDROP_<KEY>``: flags and the config file reach them too.
    """
    from app.metrics import multiprocess_dir, prepare_multiprocess_dir

    folder = settings.metrics_dir or multiprocess_dir()
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="mcdrop-metrics-"))
    prepare_multiprocess_dir(folder)
    for key, value in settings.model_dump(mode="json", exclude={"metrics_dir"}).items():
        if value is not None:
            os.environ[f"MCDROP_{key.upper()}"] = str(value)
    os.environ["MCDROP_METRICS_DIR"] = str(folder)
    logging.getLogger(__name__).info("%d workers; shared metrics in %s", settings.workers, folder)
