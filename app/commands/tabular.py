"""Labelled tables for the CLI: a CSV file with a header row, one example per line.

Every column except the label column is a numeric feature, in file order; a row of F features
is reshaped to the model's input shape (whose sizes must multiply to F).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class TableError(ValueError):
    """The file cannot be read as a labelled table; the message names the line or column."""


@dataclass(frozen=True)
class Table:
    """The header and the cells (as text) of a CSV file."""

    columns: list[str]
    rows: list[list[str]]


def read_csv(path: Path) -> Table:
    """Read `path`: a header row, then rows with as many cells as the header."""
    try:
        with path.open(newline="") as handle:
            lines = [row for row in csv.reader(handle) if row]
    except OSError as exc:
        raise TableError(f"{path}: {exc.strerror or exc}") from exc
    if len(lines) < 2:
        raise TableError(f"{path}: needs a header row and at least one data row")
    columns = [name.strip() for name in lines[0]]
    for number, row in enumerate(lines[1:], start=2):
        if len(row) != len(columns):
            raise TableError(
                f"{path}, line {number}: {len(row)} cells, the header has {len(columns)}"
            )
    return Table(columns, [[cell.strip() for cell in row] for row in lines[1:]])


def _number(text: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TableError(
            f"{path}, line {line}, column '{column}': {text!r} is not a number"
        ) from None
    if not math.isfinite(value):
        raise TableError(f"{path}, line {line}, column '{column}': {text!r} is not finite")
    return value


def labelled_rows(
    path: Path, target: str | None, input_shape: Sequence[int]
) -> tuple[np.ndarray, list[str] | None]:
    """(inputs (B, *input_shape) float64, label cells or None) from the CSV file at `path`.

    `target` names the label column, which must exist; None: every column is a feature.
    """
    table = read_csv(path)
    if target is not None and target not in table.columns:
        raise TableError(f"{path}: no column '{target}' (columns: {', '.join(table.columns)})")
    return _split(table, path, target, input_shape)


def feature_rows(path: Path, input_shape: Sequence[int], ignore: str | None = None) -> np.ndarray:
    """Inputs (B, *input_shape) float64 of an unlabelled CSV file; a column named `ignore`
    (a label column), if there is one, is left out."""
    table = read_csv(path)
    label = ignore if ignore in table.columns else None
    return _split(table, path, label, input_shape)[0]


def _split(
    table: Table, path: Path, target: str | None, input_shape: Sequence[int]
) -> tuple[np.ndarray, list[str] | None]:
    if any(size < 1 for size in input_shape):
        raise TableError(
            f"{path}: the model's input shape {list(input_shape)} has a variable axis, which one "
            "CSV line per row cannot hold; send such rows to a server (JSON, or a v2 tensor with "
            "its lengths)"
        )
    label_at = table.columns.index(target) if target is not None else None
    features = [i for i in range(len(table.columns)) if i != label_at]
    expected = math.prod(input_shape)
    if len(features) != expected:
        raise TableError(
            f"{path}: {len(features)} feature columns, the model's input shape "
            f"{list(input_shape)} needs {expected}"
        )
    values = np.array(
        [
            [_number(row[i], path, line, table.columns[i]) for i in features]
            for line, row in enumerate(table.rows, start=2)
        ],
        dtype=np.float64,
    )
    labels = [row[label_at] for row in table.rows] if label_at is not None else None
    return values.reshape(len(table.rows), *input_shape), labels


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Write a header and rows; Python floats are written in their shortest exact form."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
