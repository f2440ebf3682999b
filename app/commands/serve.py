"""``mcdrop serve``: serve every model in the models directory with uvicorn."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` sub-command."""
    serve = commands.add_parser("serve", help="serve every model in the models directory")
    serve.add_argument("--host", help="interface to bind (settings: host)")
    serve.add_argument("--port", type=int, help="TCP port (settings: port)")
    serve.add_argument("--config", type=Path, help="YAML settings file (config/default.yaml)")
    serve.add_argument("--models-dir", type=Path, help="model repository (settings: models_dir)")
    serve.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load the settings (flags > environment > file > defaults) and run uvicorn."""
    import uvicorn

    from app.config import load_settings
    from app.main import create_app

    flags = {"host": args.host, "port": args.port, "models_dir": args.models_dir}
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
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
    )
    return 0
