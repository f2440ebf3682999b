"""Seeded, counter-style dropout masks.

The keep-mask of sample ``t`` at dropout layer ``l`` for a request with seed ``s`` is a pure
function of ``(s, l, t)``: masks are drawn in blocks of ``block_samples(shape)`` samples (a fixed
size per layer) from a generator seeded with a hash of ``(s, l, t // block)``. So the numbers a
request gets do not depend on how its samples are chunked, on which other requests share the
forward pass, or on the other rows of the request (one mask per sample is shared by every row:
each pass is one sampled network).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MASK_BLOCK = 128
"""Most samples drawn per block; layers with large masks use smaller blocks."""
_BLOCK_ELEMENTS = 1 << 16
_MASK64 = (1 << 64) - 1
_UNIT_RANGE = 1 << 16


def _splitmix64(value: int) -> int:
    z = (value + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def stream_seed(*keys: int) -> int:
    """Mix integer keys into one non-negative 63-bit generator seed."""
    h = 0
    for key in keys:
        h = _splitmix64(h ^ (key & _MASK64))
    return h & ((1 << 63) - 1)


class MaskSource:
    """Keep-masks for one request within one sampling run; blocks are drawn once and cached."""

    def __init__(self, seed: int, device: torch.device) -> None:
        self.seed = seed
        self.device = device
        self._blocks: dict[tuple[int, int, torch.dtype | None], Tensor] = {}

    def keep_mask(self, layer: int, t0: int, t1: int, shape: tuple[int, ...], p: float) -> Tensor:
        """Bool keep-mask (t1 - t0, *shape) for samples t0..t1-1 of dropout layer ``layer``."""
        return self._samples(layer, t0, t1, shape, p, None)

    def scaled_mask(
        self, layer: int, t0: int, t1: int, shape: tuple[int, ...], p: float, dtype: torch.dtype
    ) -> Tensor:
        """The keep-mask as ``dtype`` times 1 / (1 - p): multiply activations by it."""
        return self._samples(layer, t0, t1, shape, p, dtype)

    def _samples(
        self,
        layer: int,
        t0: int,
        t1: int,
        shape: tuple[int, ...],
        p: float,
        dtype: torch.dtype | None,
    ) -> Tensor:
        size = block_samples(shape)
        first, last = t0 // size, (t1 - 1) // size
        blocks = [self._block(layer, k, size, shape, p, dtype) for k in range(first, last + 1)]
        stacked = blocks[0] if len(blocks) == 1 else torch.cat(blocks)
        offset = first * size
        return stacked[t0 - offset : t1 - offset]

    def _block(
        self,
        layer: int,
        block: int,
        size: int,
        shape: tuple[int, ...],
        p: float,
        dtype: torch.dtype | None,
    ) -> Tensor:
        key = (layer, block, dtype)
        cached = self._blocks.get(key)
        if cached is not None and tuple(cached.shape[1:]) == shape:
            return cached
        if dtype is None:
            mask = self._draw(layer, block, size, shape, p)
        else:
            keep = self._block(layer, block, size, shape, p, None)
            mask = torch.where(keep, 1.0 / (1.0 - p), 0.0).to(dtype)
        self._blocks[key] = mask
        return mask

    def _draw(self, layer: int, block: int, size: int, shape: tuple[int, ...], p: float) -> Tensor:
        """One block of keep-masks: 16 random bits per unit, taken four at a time from 64-bit
        words (far cheaper than one torch.rand float per unit)."""
        elements = size * math.prod(shape)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(stream_seed(self.seed, layer, block))
        words = torch.empty((elements + 3) // 4, dtype=torch.int64, device=self.device)
        words.random_(-(2**63), 2**63 - 1, generator=generator)
        units = words.view(torch.int16)[:elements]
        return (units >= drop_threshold(p) - 2**15).view(size, *shape)


def block_samples(shape: tuple[int, ...]) -> int:
    """Samples per mask block for masks of ``shape``: MASK_BLOCK, halved while a block would
    exceed 65,536 elements, never below 16 (so small-N requests do not draw huge blocks)."""
    elements = max(1, math.prod(shape))
    size = MASK_BLOCK
    while size > 16 and size * elements > _BLOCK_ELEMENTS:
        size //= 2
    return size


def drop_threshold(p: float) -> int:
    """16-bit threshold: a uniform unit in [0, 2^16) below it drops (|P(drop) - p| <= 2^-17)."""
    return round(p * _UNIT_RANGE)
