"""What the people-facing commands share: plain-text tables and the server URL flag."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from app.client import DEFAULT_URL


def add_url_flag(parser: argparse.ArgumentParser) -> None:
    """``--url``: the mcdrop server to talk to."""
    parser.add_argument("--url", default=DEFAULT_URL, help=f"mcdrop server (default {DEFAULT_URL})")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A left-aligned text table with a header rule; numbers are aligned right."""
    cells = [[_text(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(_is_number(row[i]) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(list(headers)), rule, *(line(row) for row in cells)])


def number(value: float, digits: int = 4) -> str:
    """A float with ``digits`` significant digits, no exponent for everyday magnitudes."""
    return f"{value:.{digits}g}"


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return number(value)
    return str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
