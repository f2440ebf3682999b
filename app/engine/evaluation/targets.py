"""Evaluation targets from JSON or CSV cells: class indices, label sets, regression values.

Errors name the offending entry (``targets[3]``) and show at most 40 characters of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from app.errors import InvalidInputError

_MAX_DIGITS = 18
"""Most digits of a class index written as a string."""


def class_targets(targets: Sequence[Any], labels: Sequence[str] | None, classes: int) -> Tensor:
    """(B,) long class indices: each target a label of ``labels`` or an index."""
    return torch.tensor(
        [_class_index(value, labels, classes, i) for i, value in enumerate(targets)],
        dtype=torch.long,
    )


def regression_targets(targets: Sequence[Any], width: int) -> Tensor:
    """(B, D) float64 values: each target a number (D = 1) or a list of D numbers."""
    return torch.tensor(
        [_regression_target(value, width, i) for i, value in enumerate(targets)],
        dtype=torch.float64,
    )


def _class_index(value: Any, labels: Sequence[str] | None, classes: int, row: int) -> int:
    if labels is not None and isinstance(value, str) and value in labels:
        return labels.index(value)
    index = _as_integer(value)
    if index is None or not 0 <= index < classes:
        known = f"one of {list(labels)} or " if labels is not None else ""
        raise InvalidInputError(
            f"targets[{row}]", f"{_shown(value)} is not a class: expected {known}0..{classes - 1}"
        )
    return index


def _as_integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    # ASCII digits only, and few of them: "²" is a digit to isdigit() but not to int(), and
    # int() refuses strings of more than 4,300 digits.
    text = value.strip().removeprefix("-") if isinstance(value, str) else ""
    if text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS:
        return int(value)
    return None


def _regression_target(value: Any, width: int, row: int) -> list[float]:
    values = value if isinstance(value, list) else [value]
    numbers = [_finite_float(v) for v in values]
    if any(v is None for v in numbers):
        raise InvalidInputError(f"targets[{row}]", f"must be finite numbers, got {_shown(value)}")
    if len(numbers) != width:
        raise InvalidInputError(
            f"targets[{row}]", f"has {len(numbers)} values, the model has {width} outputs"
        )
    return [v for v in numbers if v is not None]


def _finite_float(value: Any) -> float | None:
    """``value`` as a finite float, or None (not a number, a bool, infinite, or an integer too
    large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _shown(value: Any) -> str:
    """A value as an error message shows it: at most 40 characters of its repr."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def label_set_targets(targets: Sequence[Any], labels: Sequence[str] | None, classes: int) -> Tensor:
    """(B, K) float64 0/1 label sets: each target the list of labels (or indices) that apply,
    possibly empty."""
    return torch.tensor(
        [_label_set(value, labels, classes, i) for i, value in enumerate(targets)],
        dtype=torch.float64,
    )


def _label_set(value: Any, labels: Sequence[str] | None, classes: int, row: int) -> list[float]:
    if not isinstance(value, list):
        raise InvalidInputError(f"targets[{row}]", f"must be a list of labels, got {_shown(value)}")
    on = [0.0] * classes
    for member in value:
        on[_class_index(member, labels, classes, row)] = 1.0
    return on


def mask_targets(targets: Sequence[Any], size: tuple[int, int], classes: int) -> Tensor:
    """(B, H, W) long target masks: each target an H x W nested list of class indices
    (booleans for a binary mask: true is class 1)."""
    return torch.stack([_mask(value, size, classes, i) for i, value in enumerate(targets)])


def _mask(value: Any, size: tuple[int, int], classes: int, row: int) -> Tensor:
    height, width = size
    shape_ok = (
        isinstance(value, list)
        and len(value) == height
        and all(isinstance(line, list) and len(line) == width for line in value)
    )
    if not shape_ok:
        raise InvalidInputError(
            f"targets[{row}]", f"must be a {height} x {width} list of lists of class indices"
        )
    if not all(isinstance(v, int) and 0 <= v < classes for line in value for v in line):
        raise InvalidInputError(
            f"targets[{row}]", f"class indices must be integers in 0..{classes - 1}"
        )
    return torch.tensor(value, dtype=torch.long)
