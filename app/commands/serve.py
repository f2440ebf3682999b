"""``mcdrop serve``: serve every model in the models directory with uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from app.api.state import AppState
from app.config import Settings

logger = logging.getLogger(__name__)

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


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT: readiness turns false at once; after ``delay_s`` (still serving, so
    load balancers can notice) uvicorn stops accepting connections, lets in-flight requests
    finish, then the app's lifespan drains the batchers."""

    def __init__(self, config: uvicorn.Config, state: AppState, delay_s: float) -> None:
        super().__init__(config)
        self.state = state
        self.delay_s = delay_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not self.state.shutting_down
        self.state.shutting_down = True
        if first and self.delay_s > 0:
            logger.info("signal %d: not ready; draining in %.1fs", sig, self.delay_s)
            timer = threading.Timer(self.delay_s, super().handle_exit, (sig, frame))
            timer.daemon = True
            timer.start()
            return
        super().handle_exit(sig, frame)


def run(args: argparse.Namespace) -> int:
    """Load the settings (flags > environment > file > defaults) and run uvicorn."""
    from pydantic import ValidationError

    from app.config import http_workers, load_settings, settings_problem
    from app.logs import configure_logging

    flags = {
        "host": args.host,
        "port": args.port,
        "models_dir": args.models_dir,
        "workers": args.workers,
    }
    overrides: dict[str, Any] = {key: value for key, value in flags.items() if value is not None}
    try:
        settings = load_settings(args.config, **overrides)
    except ValidationError as exc:
        print(f"mcdrop: {settings_problem(exc)}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"mcdrop: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from app.main import check_startup

    try:
        check_startup(settings)
    except (OSError, ValueError) as exc:  # an unreadable key file, keys required but none
        print(f"mcdrop: {exc}", file=sys.stderr)
        return 2
    settings = settings.model_copy(update={"workers": http_workers(settings)})
    if not settings.inference_process or settings.model_control == "explicit":
        return _serve_http(settings)
    from app.dataplane.process import InferenceProcess

    inference = InferenceProcess(settings)
    if not inference.start():
        print("mcdrop: the inference process could not start (see its log)", file=sys.stderr)
        return 1
    try:
        return _serve_http(settings.model_copy(update={"inference_socket": inference.socket}))
    finally:
        inference.stop()


def _serve_http(settings: Settings) -> int:
    """Run the HTTP worker(s): in this process, or ``workers`` processes on one socket."""
    from app.server import run_workers, server_config

    if settings.workers > 1:
        _prepare_workers(settings)
        run_workers(server_config(APP_FACTORY, settings, factory=True, workers=settings.workers))
        return 0
    from app.main import create_app

    try:
        app = create_app(settings, freeze_heap=True)
    except (OSError, ValueError) as exc:  # an unreadable key file, keys required but none
        print(f"mcdrop: {exc}", file=sys.stderr)
        return 2
    config = server_config(app, settings)
    DrainingServer(config, app.state.mcdrop, settings.shutdown_delay_s).run()
    return 0


def _prepare_workers(settings: Settings) -> None:
    """Shared metrics folder and settings for worker processes, before any of them starts.

    Workers build their own settings from the environment, so every resolved setting is
    exported as ``MCDROP_<KEY>`` (lists comma-separated): flags and the config file reach them.
    """
    from app.metrics import multiprocess_dir, prepare_multiprocess_dir

    folder = settings.metrics_dir or multiprocess_dir()
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="mcdrop-metrics-"))
    prepare_multiprocess_dir(folder)
    for key, value in settings.model_dump(mode="json", exclude={"metrics_dir"}).items():
        if isinstance(value, list):
            os.environ[f"MCDROP_{key.upper()}"] = ",".join(str(item) for item in value)
        elif value is not None:
            os.environ[f"MCDROP_{key.upper()}"] = str(value)
    os.environ["MCDROP_METRICS_DIR"] = str(folder)
    logger.info("%d workers; shared metrics in %s", settings.workers, folder)
