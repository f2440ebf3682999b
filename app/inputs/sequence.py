"""Variable-length tensor rows: padded per request to a length bucket, their true lengths
packed in front of the values when the model takes them.

A request's rows (each of shape ``row_shape`` with one variable axis, -1) are padded along that
axis to the request's bucket: the smallest of 16, 32, 64, ... (and ``max_length`` itself) that
holds its longest row. The bucket depends only on the request's own rows, and the sampler runs
rows of different shapes in separate forward calls, so a seeded request gets the same numbers
alone or fused with requests of other lengths.

With ``lengths: true`` each row travels as one flat vector ``[length, *values]`` (B, 1 + L*F):
the lengths are then part of the input, repeated with it when the sampler folds N passes into
the batch (row ``t*B + b`` is pass t of row b, its length included) and split off by
:func:`take_lengths`, which calls ``forward(x, lengths)``. The padding rows of a forward chunk
are zeros, length 0: they are given length 1 (their outputs are dropped).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from app.errors import ModelLoadError
from app.registry.text import bucket_length

__all__ = ["bucket_length", "pack", "pad_rows", "take_lengths"]


def pad_rows(rows: Sequence[Tensor], axis: int, max_length: int, pad: float) -> Tensor:
    """(B, *row_shape with the variable ``axis`` at the bucket length) from rows of any length
    along it, padded with ``pad``."""
    length = bucket_length(max(int(row.shape[axis]) for row in rows), max_length)
    first = rows[0]
    shape = list(first.shape)
    shape[axis] = length
    out = torch.full((len(rows), *shape), pad, dtype=first.dtype)
    for index, row in enumerate(rows):
        out[index].narrow(axis, 0, int(row.shape[axis])).copy_(row)
    return out


def pack(padded: Tensor, lengths: Sequence[int]) -> Tensor:
    """(B, 1 + prod(row)) rows ``[length, *values]`` from padded rows (B, *row)."""
    column = torch.tensor(lengths, dtype=padded.dtype).unsqueeze(1)
    return torch.cat([column, padded.flatten(1)], dim=1)


def take_lengths(module: nn.Module, row_shape: Sequence[int], card_name: str) -> nn.Module:
    """``module`` changed in place to take packed rows: its forward splits ``[length, *x]`` and
    calls the original ``forward(x, lengths)`` (lengths (B,) int64). The module keeps its
    identity (its dropout sites keep their names) and torch.fx can still trace it."""
    if isinstance(module, torch.jit.ScriptModule):
        raise ModelLoadError(
            f"model '{card_name}': input.lengths needs a bundled or Python-file model "
            "(a TorchScript model's forward cannot be rewrapped)"
        )
    base = type(module)
    shape = tuple(row_shape)
    original: Callable[..., Any] = base.forward

    def forward(self: nn.Module, packed: Tensor) -> Any:
        lengths = packed[:, 0].long().clamp(min=1)
        values = packed[:, 1:].reshape(packed.shape[0], *shape)
        return original(self, values, lengths)

    forward.__doc__ = f"Packed rows [length, *x] -> {base.__name__}.forward(x, lengths)."
    namespace = {"forward": forward, "__module__": base.__module__}
    module.__class__ = type(base.__name__, (base,), namespace)
    return module
