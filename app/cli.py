"""The ``mcdrop`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app import __version__


def build_parser() -> argparse.ArgumentParser:
    """Every sub-command and its flags."""
    parser = argparse.ArgumentParser(prog="mcdrop", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mcdrop {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve every model in the models directory")
    serve.add_argument("--host", help="interface to bind (settings: host)")
    serve.add_argument("--port", type=int, help="TCP port (settings: port)")
    serve.add_argument(
        "--config", type=Path, help="YAML settings file (default config/default.yaml)"
    )
    serve.add_argument("--models-dir", type=Path, help="model repository (settings: models_dir)")
    serve.set_defaults(handler=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mcdrop`` console script."""
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.config import load_settings
    from app.main import create_app

    overrides: dict[str, Any] = {
        key: value
        for key, value in (
            ("host", args.host),
            ("port", args.port),
            ("models_dir", args.models_dir),
        )
        if value is not None
    }
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


if __name__ == "__main__":
    raise SystemExit(main())
