"""Forward calls of fewer rows than ``ROW_ALIGN``, for models whose activations per row are large.

A chunk (:func:`app.engine.sampler.plan_chunks`) holds pieces padded to multiples of
``ROW_ALIGN`` rows. For a model whose largest per-pass activation is big (a U-Net at full
resolution), a 16-row call overflows the CPU's caches: on the development machine (2 MiB of L2
per core) a 128 x 128 U-Net cost about 17 ms per image in calls of 4 or 8 rows and 24 ms in
calls of 16. So each piece of such a chunk runs ``call_rows`` rows at a time, the largest power
of two dividing ``ROW_ALIGN`` whose largest activation fits ``CALL_ACTIVATION_BYTES``.

Bits: every call has the same number of rows, ``rows`` (a function of the model and the row
shape only), and never straddles two pieces; a piece starts at a multiple of ``ROW_ALIGN``
passes, so a folded row ``t * B + b`` always sits at position ``(t * B + b) % rows`` of its call,
whatever the round sizes and whatever else is in the batch. Masks are the same seeded masks
(drawn per sample, broadcast over the call's rows), multiplied elementwise: the same products.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from app.engine.dropout import DropoutLayer, MaskKind, mask_shape
from app.engine.masks import MaskSource
from app.engine.positions import drawn_shape
from app.engine.prefix import ModelSplit, Unfolded
from app.engine.sampling import ROW_ALIGN

if TYPE_CHECKING:
    from app.engine.sampler import _Piece

CALL_ACTIVATION_BYTES = 16 * 2**20
"""Bound for dense tasks (segmentation: the sampler's ``call_bytes``) on one forward call's
largest activation (rows x the split's ``row_bytes``): 16 MiB,
8 rows of a 128 x 128 U-Net's widest decoder tensor (32 channels), about the cache-friendliest
call on the development CPU (bench/segmentation.py, docs/benchmarks.md)."""


def call_rows(
    split: ModelSplit, row: Tensor, layers: Sequence[DropoutLayer], bound: int | None
) -> int:
    """Rows per forward call for inputs shaped like ``row`` (one input row): ``ROW_ALIGN``
    halved while ``rows x row_bytes`` exceeds ``bound`` (at least 1); ``ROW_ALIGN`` without a
    bound (the sampler's ``call_bytes``, set for dense tasks only: the text and tabular
    benchmarks were tuned with ROW_ALIGN-aligned calls and are left so).
    ``ROW_ALIGN`` (the chunk as planned) without an fx split's footprint, or with a dropout
    that is not a plain mask (stochastic modules, alpha dropout), which run piece by piece."""
    plain = all(layer.mask_kind is not MaskKind.MODULE and not layer.alpha for layer in layers)
    if not (bound and split.applies_dropout and split.row_bytes and split.probe_values and plain):
        return ROW_ALIGN
    row_bytes = split.row_bytes * row.numel() / split.probe_values
    rows = ROW_ALIGN
    while rows > 1 and rows * row_bytes > bound:
        rows //= 2
    return rows


def sample_piece_in_calls(
    split: ModelSplit,
    layers: Sequence[DropoutLayer],
    piece: _Piece,
    masks: MaskSource,
    values: tuple[Tensor, ...],
    rows: int,
) -> Tensor:
    """The piece's outputs (t1 - t0, B, *output_shape) from calls of ``rows`` rows, each fed
    its rows of the prefix ``values`` (each (B, *F)): row r of the piece is sample
    ``t0 + r // B`` of input row ``r % B``; rows past the covered samples are zeros."""
    outputs = []
    for start in range(0, piece.folded_rows, rows):
        dropout = RowsDropout(layers, piece, masks, start, rows)
        folded = [_rows_of(value, piece, start, rows) for value in values]
        result = split.suffix(dropout, *folded)
        outputs.append(result[: min(rows, piece.folded_rows - start)])
    joined = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
    return joined.view(piece.t1 - piece.t0, piece.rows, *joined.shape[1:])


def _rows_of(value: Tensor, piece: _Piece, start: int, rows: int) -> Tensor:
    """Rows start..start+rows-1 of the piece's folded value: input row r % B, zeros past the
    covered samples."""
    index = torch.arange(start, start + rows, device=value.device)
    out = value.index_select(0, index % piece.rows)
    real = piece.covered_samples * piece.rows - start
    if real < rows:
        out[max(real, 0) :].zero_()
    return out


class RowsDropout:
    """Seeded masks for one call: rows start..start+count-1 of a piece, each row the mask of
    its sample (the piece's masks for those samples, indexed per row)."""

    def __init__(
        self,
        layers: Sequence[DropoutLayer],
        piece: _Piece,
        masks: MaskSource,
        start: int,
        count: int,
    ) -> None:
        self.layers = layers
        self.masks = masks
        first = start // piece.rows
        last = min((start + count - 1) // piece.rows, piece.covered_samples - 1)
        self.t0, self.t1 = piece.t0 + first, piece.t0 + last + 1
        samples = torch.arange(start, start + count) // piece.rows - first
        self.index = samples.clamp(max=last - first)
        self._calls: dict[int, int] = {}

    def apply(self, index: int, x: Tensor | Unfolded) -> Tensor:
        """Dropout layer ``index`` on the call's activations x (rows, *features)."""
        if isinstance(x, Unfolded):  # the sampler folds every value for row calls
            raise TypeError("row calls fold every crossing value")
        call = self._calls.get(index, 0)
        self._calls[index] = call + 1
        layer = self.layers[index]
        if layer.p <= 0.0:
            return x
        shape = mask_shape(layer.mask_kind, x.shape[1:], layer.shared)
        scaled = masks_of_samples(self.masks, layer, call, self.t0, self.t1, shape, x.dtype)
        return x * scaled[self.index.to(scaled.device)]


def masks_of_samples(
    source: MaskSource,
    layer: DropoutLayer,
    call: int,
    t0: int,
    t1: int,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    scaled: bool = True,
) -> Tensor:
    """Scaled masks (t1 - t0, *shape) of samples t0..t1-1 for call ``call`` of ``layer`` (after
    a first-positions cut: the first positions of the whole sequence's masks); 0 or 1 without
    ``scaled``."""
    positional = layer.mask_kind is MaskKind.ELEMENT and not layer.shared
    drawn = drawn_shape(shape) if positional else shape
    first = None if drawn == shape else shape[-2]  # only the kept positions are converted
    stream = mask_stream(layer, call)
    return source.scaled_mask(stream, t0, t1, drawn, layer.p, dtype, first, scaled)


def mask_stream(layer: DropoutLayer, call: int) -> int:
    """Mask stream of a layer's ``call``-th application in a forward pass (the first call keeps
    the layer's index, so models calling each dropout once draw what they always drew)."""
    return layer.index if call == 0 else layer.index + (call << 20)
