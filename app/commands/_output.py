"""What the people-facing commands share: exit codes, the server flags, tables.

Exit codes, the same for every command:

- ``EXIT_OK`` (0): done, nothing wrong found;
- ``EXIT_PROBLEM`` (1): the command ran and found a problem (``check-model``), or the server
  answered with an error or could not be reached, or a model could not be loaded;
- ``EXIT_USAGE`` (2): the command line or an input file cannot be used as given (argparse's
  own errors, a bad flag value, a CSV without the label column, rows that do not fit the
  model when the command checks them itself).

A reader that closes the pipe early (``mcdrop evaluate ... --json | head -1``) stops the
command quietly, as it stops ``yes | head``: exit 0, no traceback.
"""

from __future__ import annotations

import argparse
import os

from app.client import DEFAULT_URL
from app.commands.tables import number as number
from app.commands.tables import table as table

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2

EXIT_CODES_HELP = (
    "exit status: 0 ok, 1 a problem found (or a server error, or the server cannot be "
    "reached), 2 usage (bad flags or unusable input files)"
)

API_KEY_ENV = "MCDROP_API_KEY"


def add_url_flag(parser: argparse.ArgumentParser, default: str | None = DEFAULT_URL) -> None:
    """``--url``: the mcdrop server to talk to; ``--api-key``: the key it asks for."""
    shown = f"default {default}" if default else "e.g. " + DEFAULT_URL
    parser.add_argument("--url", default=default, help=f"mcdrop server ({shown})")
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"API key sent as 'Authorization: Bearer' (default: ${API_KEY_ENV})",
    )
