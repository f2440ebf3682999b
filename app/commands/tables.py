"""Plain-text tables: the one renderer of the ``mcdrop`` commands and the evaluation reports.

Plain Python (no torch, no matplotlib), so any command can print a table without slowing its
start-up.
"""

from __future__ import annotations

from collections.abc import Sequence


def table(headers: Sequence[str] | None, rows: Sequence[Sequence[object]]) -> str:
    """Columns two spaces apart, a rule under the headers (none when ``headers`` is None);
    text aligned left, columns holding only numbers aligned right, None shown as ``-``."""
    cells = [[_text(value) for value in row] for row in rows]
    columns = len(headers) if headers is not None else max((len(row) for row in rows), default=0)
    titles = list(headers) if headers is not None else [""] * columns
    widths = [max([len(t), *(len(row[i]) for row in cells)]) for i, t in enumerate(titles)]
    numeric = [bool(rows) and all(_is_number(row[i]) for row in rows) for i in range(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    body = [line(row) for row in cells]
    if headers is None:
        return "\n".join(body)
    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(titles), rule, *body])


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
