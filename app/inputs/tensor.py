"""The tensor input kind: numbers in rows of the card's shape (``input: {shape, dtype}``).

Float rows are checked finite and within the model dtype's range (a larger value overflows
before the first layer); integer rows (``dtype: int64`` / ``int32``) are checked to hold whole
numbers inside ``range: [lo, hi)`` (token ids inside the vocabulary). A shape with -1 takes rows
of any length up to ``max_length`` along that axis, padded per request (see
:mod:`app.inputs.sequence`). Every refusal names the row and the position in it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from app.engine.images import encoded_image
from app.engine.inputs import rows_to_tensor
from app.errors import InvalidInputError, InvalidTensorError
from app.inputs.base import (
    INPUT_NAME,
    InputDescription,
    InputKind,
    Rows,
    TensorInfo,
    Widget,
    WireTensor,
    check_row_count,
    few_numbers,
)
from app.inputs.sequence import pack, pad_rows
from app.inputs.wire import V2_DATATYPE, numeric_array
from app.registry.card_inputs import InputSpec

LENGTHS_NAME = "lengths"
"""The optional v2 input of a variable-length model: each row's true length (INT64 [B])."""
MAX_CANVAS_SIDE = 64
_TORCH_DTYPES = {
    "float32": torch.float64,
    "float64": torch.float64,
    "int32": torch.int32,
    "int64": torch.int64,
}
"""Float rows stay float64 until the sampler casts them to the model's dtype."""


class TensorKind(InputKind):
    """Rows of numbers of one shape (one axis may vary), float or integer."""

    def __init__(
        self,
        spec: InputSpec,
        value_limit: float,
        hint_range: tuple[float, float] | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> None:
        self.shape = list(spec.shape)
        self.dtype = spec.dtype
        self.range = spec.range
        self.integral = spec.dtype.startswith("int")
        self.axis = self.shape.index(-1) if -1 in self.shape else None
        self.max_length = spec.max_length
        self.lengths = spec.lengths
        self.value_limit = value_limit
        self.hint_range = hint_range
        self.feature_names = list(feature_names) if feature_names else None
        lo = self.range[0] if self.range is not None else 0
        self.pad = 0 if lo <= 0 else lo
        """What padding steps hold: 0, or the range's lowest value when 0 is outside it."""

    def rows(self, rows: Rows, max_rows: int, field: str = "inputs") -> Tensor:
        """(B, *shape) rows; variable-length rows padded to the request's bucket, or packed
        ``[length, *values]`` (B, 1 + L*F) when the model takes lengths."""
        check_row_count(rows, max_rows, field)
        if not isinstance(rows, np.ndarray) and any(encoded_image(r) is not None for r in rows):
            numbers = "integer" if self.integral else "float"
            raise InvalidInputError(field, f"this model takes {numbers} rows, not images")
        if self.axis is None:
            values = rows_to_tensor(rows, self.shape, max_rows, field)
            self._check_values(values, field)
            return values.to(_TORCH_DTYPES[self.dtype])
        parsed = [self._variable_row(row, f"{field}[{i}]") for i, row in enumerate(rows)]
        assert self.max_length is not None
        padded = pad_rows(parsed, self.axis, self.max_length, self.pad)
        if not self.lengths:
            return padded
        return pack(padded, [int(row.shape[self.axis]) for row in parsed])

    def builds_inline(self, rows: Rows) -> bool:
        """Fixed-shape rows of few numbers (see :func:`few_numbers`)."""
        return self.axis is None and few_numbers(rows)

    def _variable_row(self, row: Any, field: str) -> Tensor:
        """One row of any length along the variable axis (1..max_length), values checked."""
        assert self.axis is not None and self.max_length is not None
        if _is_scalar(row):
            raise InvalidInputError(field, f"must be a nested list of shape {self.shape}")
        tensor = _row_tensor(row, field, self.shape)
        expected = [d for i, d in enumerate(self.shape) if i != self.axis]
        found = [d for i, d in enumerate(tensor.shape) if i != self.axis]
        if tensor.dim() != len(self.shape) or found != expected:
            raise InvalidInputError(
                field, f"has shape {list(tensor.shape)}, expected {self.shape} (-1: any length)"
            )
        length = int(tensor.shape[self.axis])
        if not 1 <= length <= self.max_length:
            raise InvalidInputError(
                field, f"has {length} steps; this model takes 1 to {self.max_length}"
            )
        self._check_values(tensor.unsqueeze(0), field, first_row=None)
        return tensor.to(_TORCH_DTYPES[self.dtype])

    def _check_values(self, values: Tensor, field: str, first_row: int | None = 0) -> None:
        """Finite, within the dtype's range and the card's; integers whole and in [lo, hi).
        ``values`` (B, ...) float64; a refusal names ``field[row][position]`` (``field`` is
        already the row's when ``first_row`` is None)."""
        bad = ~torch.isfinite(values)
        problem = "is NaN or infinite"
        checks: list[tuple[Tensor, str]] = [(bad, problem)]
        if self.integral:
            checks.append((values != values.round(), "is not an integer"))
        else:
            checks.append((values.abs() > self.value_limit, "is beyond the model's range"))
        if self.range is not None:
            lo, hi = self.range
            outside = (values < lo) | ((values >= hi) if self.integral else (values > hi))
            bounds = f"[{_num(lo)}, {_num(hi)})" if self.integral else f"[{_num(lo)}, {_num(hi)}]"
            checks.append((outside, f"is outside the input's range {bounds}"))
        for mask, message in checks:
            if bool(mask.any()):
                index = [int(i) for i in mask.nonzero()[0]]
                row, position = index[0], index[1:]
                where = field if first_row is None else f"{field}[{row}]"
                where += "".join(f"[{p}]" for p in position)
                value = values[tuple(index)].item()
                raise InvalidInputError(where, f"= {_num(value)} {message}")

    def v2_rows(self, tensors: Mapping[str, WireTensor]) -> Rows:
        """The ``input`` tensor (B, *shape); a variable-length model's may have any length up
        to ``max_length`` along the variable axis, its rows cut to the optional ``lengths``."""
        other = sorted(set(tensors) - self.v2_names())
        if other or INPUT_NAME not in tensors:
            raise InvalidTensorError(
                f"the model takes an input named '{INPUT_NAME}'"
                + (f" and optional '{LENGTHS_NAME}'" if self.axis is not None else "")
                + f", got {sorted(tensors)}"
            )
        tensor = tensors[INPUT_NAME]
        expected = [-1, *self.shape]
        shape = tensor.shape
        fits = len(shape) == len(expected) and shape[0] >= 1
        fits = fits and all(e == -1 or s == e for s, e in zip(shape[1:], self.shape, strict=False))
        if not fits:
            raise InvalidTensorError(f"{tensor.where}: shape {shape} does not match {expected}")
        array = numeric_array(tensor)
        if self.axis is None or LENGTHS_NAME not in tensors:
            return array
        return _cut_rows(array, numeric_array(tensors[LENGTHS_NAME]), self.axis + 1)

    def describe(self) -> InputDescription:
        parts = [f"{self.shape} {self.dtype}"]
        if self.range is not None:
            lo, hi = (_num(v) for v in self.range)
            parts.append(f"values in [{lo}, {hi})" if self.integral else f"values {lo}..{hi}")
        if self.max_length is not None:
            parts.append(f"up to {self.max_length} steps")
        if self.lengths:
            parts.append("lengths passed to the model")
        return InputDescription(
            kind="tensor",
            widget=self._widget(),
            shape=self.shape,
            dtype=self.dtype,
            summary=", ".join(parts),
            range=self.range if self.range is not None else self.hint_range,
            max_length=self.max_length,
            lengths=self.lengths,
            grid=self._grid(),
            extra=self._parameters(),
        )

    def _parameters(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.range is not None:
            extra["range"] = [_num(v) for v in self.range]
        if self.max_length is not None:
            extra["max_length"] = self.max_length
            extra["lengths"] = f"optional INT64 [-1] input '{LENGTHS_NAME}' (each row's length)"
            extra["lengths_passed"] = self.lengths
        return {"input_type": "tensor", **extra} if extra else {}

    def _widget(self) -> Widget:
        if self.axis is not None:
            return "sequence"
        if self.integral:
            return "integers"
        if self._grid() is not None:
            return "canvas"
        return "fields" if self.feature_names else "numbers"

    def _grid(self) -> list[int] | None:
        """[rows, cols] when a fixed float row looks like one small grey image."""
        if self.axis is not None or self.integral or self.feature_names:
            return None
        dims = [d for i, d in enumerate(self.shape) if not (d == 1 and i < len(self.shape) - 2)]
        if len(dims) == 2 and all(4 <= d <= MAX_CANVAS_SIDE for d in dims):
            return dims
        side = round(math.sqrt(dims[0])) if len(dims) == 1 else 0
        if side * side == dims[0] and 4 <= side <= MAX_CANVAS_SIDE and self.hint_range:
            return [side, side]
        return None

    def v2_inputs(self) -> list[TensorInfo]:
        datatype = V2_DATATYPE[self.dtype]
        inputs = [TensorInfo(INPUT_NAME, datatype, [-1, *self.shape])]
        if self.axis is not None:
            inputs.append(TensorInfo(LENGTHS_NAME, "INT64", [-1], {"optional": True}))
        return inputs

    def example_rows(self, rows: int) -> Rows:
        """Rows of values drawn inside the range (floats: the card's ``range``, else its
        ``value_range``, else [0, 1)); variable-length rows of several lengths."""
        generator = torch.Generator().manual_seed(0)
        if self.axis is None:
            drawn: list[Any] = self._draw((rows, *self.shape), generator).tolist()
            return drawn
        assert self.max_length is not None
        longest = min(self.max_length, 16)
        lengths = [max(1, longest - (longest * i) // rows) for i in range(rows)]
        drawn = []
        for length in lengths:
            shape = [length if d == -1 else d for d in self.shape]
            drawn.append(self._draw(tuple(shape), generator).tolist())
        return drawn

    def _draw(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        if self.integral:
            assert self.range is not None
            first, end = int(self.range[0]), int(self.range[1])
            return torch.randint(first, end, shape, generator=generator)
        lo, hi = self.range or self.hint_range or (0.0, 1.0)
        return lo + (hi - lo) * torch.rand(shape, generator=generator)


def _row_tensor(row: Any, field: str, shape: list[int]) -> Tensor:
    if isinstance(row, np.ndarray):
        return torch.from_numpy(row.astype(np.float64))
    try:
        return torch.tensor(row, dtype=torch.float64)
    except OverflowError:
        raise InvalidInputError(field, "holds a number too large for a 64-bit float") from None
    except (TypeError, ValueError, RuntimeError):
        raise InvalidInputError(
            field, f"must be a nested list of numbers of shape {shape} (-1: any length)"
        ) from None


def _is_scalar(row: Any) -> bool:
    return isinstance(row, int | float) and not isinstance(row, bool)


def _cut_rows(array: np.ndarray, lengths: np.ndarray, axis: int) -> list[np.ndarray]:
    """Each row of a padded v2 tensor cut to its length (a list the kind pads again)."""
    if lengths.shape != (array.shape[0],):
        raise InvalidTensorError(
            f"input '{LENGTHS_NAME}': shape {list(lengths.shape)} is not [{array.shape[0]}]"
        )
    rows = []
    for index, length in enumerate(lengths.tolist()):
        if not 1 <= length <= array.shape[axis]:
            raise InvalidTensorError(
                f"input '{LENGTHS_NAME}': data[{index}] = {length} is not in 1..{array.shape[axis]}"
            )
        rows.append(np.take(array[index], range(int(length)), axis=axis - 1))
    return rows


def _num(value: float) -> float | int:
    """A value as the card wrote it: 3 rather than 3.0."""
    return int(value) if float(value).is_integer() else value
