"""Turning request rows (nested lists of numbers) into a checked input tensor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from app.errors import InvalidInputError


def rows_to_tensor(
    rows: Sequence[Any] | np.ndarray, row_shape: Sequence[int], max_rows: int, field: str = "inputs"
) -> Tensor:
    """(B, *row_shape) float64 tensor from B nested-list rows (or one array, batch first);
    errors name the offending row."""
    if len(rows) == 0:
        raise InvalidInputError(field, "must hold at least one row")
    if len(rows) > max_rows:
        raise InvalidInputError(field, f"has {len(rows)} rows, more than the limit of {max_rows}")
    if isinstance(rows, np.ndarray):
        tensor = torch.from_numpy(rows.astype(np.float64))
    else:
        tensor = _nested_tensor(rows, row_shape, field)
    if tuple(tensor.shape[1:]) != tuple(row_shape):
        if not isinstance(rows, np.ndarray):
            _raise_for_first_bad_row(rows, row_shape, field)
        raise InvalidInputError(
            field, f"each row must have shape {list(row_shape)}, got {list(tensor.shape[1:])}"
        )
    if not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).flatten(1).any(1).nonzero()[0])
        raise InvalidInputError(f"{field}[{bad}]", "contains NaN or infinity")
    return tensor


def check_input_range(inputs: Tensor, limit: float, field: str = "inputs") -> None:
    """Refuse rows holding a value beyond ``limit`` in magnitude (the largest finite value of
    the dtype the model runs in): such a row overflows to infinity before the first layer."""
    beyond = inputs.abs().flatten(1).amax(1) > limit
    if bool(beyond.any()):
        row = int(beyond.nonzero()[0])
        raise InvalidInputError(
            f"{field}[{row}]", f"holds a value beyond the model's range (|x| <= {limit:.4g})"
        )


def _nested_tensor(rows: Sequence[Any], row_shape: Sequence[int], field: str) -> Tensor:
    try:
        return torch.tensor(rows, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        _raise_for_first_bad_row(rows, row_shape, field)
        raise InvalidInputError(field, "rows must be nested lists of numbers") from None


def _raise_for_first_bad_row(rows: Sequence[Any], row_shape: Sequence[int], field: str) -> None:
    for index, row in enumerate(rows):
        try:
            shape = list(torch.tensor(row, dtype=torch.float64).shape)
        except OverflowError:
            raise InvalidInputError(
                f"{field}[{index}]", "holds a number too large for a 64-bit float"
            ) from None
        except (TypeError, ValueError, RuntimeError):
            raise InvalidInputError(
                f"{field}[{index}]",
                f"must be a nested list of numbers of shape {list(row_shape)}",
            ) from None
        if shape != list(row_shape):
            raise InvalidInputError(
                f"{field}[{index}]", f"has shape {shape}, expected {list(row_shape)}"
            )
