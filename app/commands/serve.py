"""``mcdrop serve``: serve every model in the models directory with uvicorn."""

from __future__ import annotations

import argparse
import logging
import math
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from app.state import AppState

logger = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` sub-command."""
    serve = commands.add_parser("serve", help="serve every model in the models directory")
    serve.add_argument("--host", help="interface to bind (settings: host)")
    serve.add_argument("--port", type=int, help="TCP port (settings: port)")
    serve.add_argument("--config", type=Path, help="YAML settings file (config/default.yaml)")
    serve.add_argument("--models-dir", type=Path, help="model repository (settings: models_dir)")
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
    from app.config import load_settings
    from app.logs import configure_logging
    from app.main import create_app

    flags = {"host": args.host, "port": args.port, "models_dir": args.models_dir}
    overrides: dict[str, Any] = {key: value for key, value in flags.items() if value is not None}
    try:
        settings = load_settings(args.config, **overrides)
    except (FileNotFoundError, ValueError) as exc:
        print(f"mcdrop: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(1, math.ceil(settings.request_timeout_s)),
    )
    DrainingServer(config, app.state.mcdrop, settings.shutdown_delay_s).run()
    return 0
