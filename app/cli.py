"""The ``mcdrop`` command line: each sub-command lives in its own module of ``app.commands``.

Only the module of the command being run is imported (``--help`` imports them all), so a
command that needs no torch (``mcdrop models``) does not pay for the others' imports.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from app import __version__
from app.commands._output import EXIT_CODES_HELP, EXIT_OK

COMMANDS = {
    "serve": "app.commands.serve",
    "models": "app.commands.models",
    "predict": "app.commands.predict",
    "check-model": "app.commands.check_model",
    "evaluate": "app.commands.evaluate",
    "calibrate": "app.commands.calibrate",
    "train": "app.commands.train",
    "rank": "app.commands.rank",
}
"""Sub-command name -> the module whose ``register`` adds it."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every sub-command and its flags (just ``only``'s when it names one)."""
    parser = argparse.ArgumentParser(
        prog="mcdrop",
        description="Monte Carlo Dropout uncertainty for PyTorch models.",
        epilog=EXIT_CODES_HELP,
    )
    parser.add_argument("--version", action="version", version=f"mcdrop {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).register(subparsers)
    for command in subparsers.choices.values():
        command.epilog = command.epilog or EXIT_CODES_HELP
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mcdrop`` console script; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    named = arguments[0] if arguments and arguments[0] in COMMANDS else None
    args = build_parser(named).parse_args(arguments)
    try:
        result: int = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    return result


def _silence_stdout() -> None:
    """The reader closed the pipe (``| head``): what is left to print goes nowhere, and the
    interpreter's final flush of stdout cannot raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is not a real file (captured by a test): nothing to redirect
    finally:
        os.close(devnull)


if __name__ == "__main__":
    raise SystemExit(main())
