"""The ``mcdrop`` command line: each sub-command lives in its own module of ``app.commands``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from app import __version__
from app.commands import calibrate, check_model, evaluate, models, predict, rank, serve, train

COMMANDS = [serve, models, predict, check_model, evaluate, calibrate, train, rank]


def build_parser() -> argparse.ArgumentParser:
    """Every sub-command and its flags."""
    parser = argparse.ArgumentParser(
        prog="mcdrop", description="Monte Carlo Dropout uncertainty for PyTorch models."
    )
    parser.add_argument("--version", action="version", version=f"mcdrop {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mcdrop`` console script."""
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
