"""``mcdrop models``: a table of the models a running server serves."""

from __future__ import annotations

import argparse
import sys

from app.client import McdropClient, McdropClientError, ModelInfo
from app.commands._output import EXIT_OK, EXIT_PROBLEM, add_url_flag, table

HEADERS = ("model", "version", "task", "input", "N default/max", "dropout", "prefix", "status")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``models`` sub-command."""
    parser = commands.add_parser("models", help="list the models a server serves")
    add_url_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the table; exit 1 if the server cannot be asked."""
    try:
        with McdropClient(args.url, api_key=args.api_key) as client:
            models = client.models()
    except McdropClientError as exc:
        print(f"mcdrop: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    if not models:
        print("no models")
        return EXIT_OK
    print(table(HEADERS, [_row(model) for model in models]))
    return EXIT_OK


def _row(model: ModelInfo) -> list[object]:
    if not model.ready:
        return [model.name, "-", "-", "-", "-", "-", "-", f"FAILED: {model.error}"]
    shape = "x".join(map(str, model.input_shape or [])) or (model.input_type or "-")
    limits = f"{model.default_n_samples}/{model.max_n_samples}"
    prefix = f"{model.prefix_fraction:.0%}"
    layers = f"{model.dropout_layers} layer{'s' if model.dropout_layers != 1 else ''}"
    return [model.name, model.version, model.task, shape, limits, layers, prefix, "ready"]
