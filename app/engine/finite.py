"""Finite answers or none: refusing rows whose numbers overflowed, naming the row.

The rule every route follows: an input row whose model output or statistic is NaN or infinite
is refused as ``inputs[i]``; a target whose score against the prediction is not finite in
float64 is refused as ``targets[i]``; never a 200 with nulls, never an infinite metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from app.errors import InvalidInputError

OUTPUT_NOT_FINITE = (
    "the model's output for this row is not finite (NaN or infinity): the input is outside "
    "what the model can compute"
)


def first_non_finite_row(tensors: Sequence[Tensor]) -> int | None:
    """The first row (dim 0 of every tensor, (B, ...)) holding a NaN or infinity, or None."""
    floating = [t for t in tensors if t.is_floating_point() and t.numel() > 0]
    if not floating:
        return None
    # One reduction per tensor first: a NaN or infinity anywhere makes its sum NaN or infinite,
    # so a finite total proves every value finite (the common case); only a non-finite total
    # (an overflow of finite values included) looks for the row.
    totals = torch.stack([t.sum(dtype=torch.float64) for t in floating])
    if math.isfinite(float(totals.sum())):
        return None
    bad: Tensor | None = None
    for tensor in floating:
        rows = (~torch.isfinite(tensor)).reshape(tensor.shape[0], -1).any(1)
        bad = rows if bad is None else bad | rows
    assert bad is not None
    if not bool(bad.any()):
        return None
    return int(bad.nonzero()[0])


def refuse_non_finite_rows(
    field: str, tensors: Sequence[Tensor], reason: str, offset: int = 0
) -> None:
    """InvalidInputError naming ``field[offset + i]`` for the first row i (dim 0 of every
    tensor) holding a NaN or infinity."""
    row = first_non_finite_row(tensors)
    if row is not None:
        raise InvalidInputError(f"{field}[{offset + row}]", reason)


def check_passes_finite(values: Tensor, noise: float | Tensor | None, offset: int = 0) -> None:
    """Refuse the first input row whose passes are not finite: values (N, B, ...) and, from
    a variance head, noise (N, B, ...); the rows are ``offset``.. of the request."""
    tensors = [values.transpose(0, 1)]
    if isinstance(noise, Tensor):
        tensors.append(noise.transpose(0, 1))
    refuse_non_finite_rows("inputs", tensors, OUTPUT_NOT_FINITE, offset)
