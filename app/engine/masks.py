"""Seeded, counter-style dropout masks.

The keep-mask of sample ``t`` at dropout layer ``l`` for a request with seed ``s`` is a pure
function of ``(s, l, t)``: masks are drawn in blocks of ``MASK_BLOCK`` samples from a generator
seeded with a hash of ``(s, l, t // MASK_BLOCK)``. So the numbers a request gets do not depend on
how its samples are chunked, on which other requests share the forward pass, or on the other rows
of the request (one mask per sample is shared by every row: each pass is one sampled network).
"""

from __future__ import annotations

import torch
from torch import Tensor

MASK_BLOCK = 64
_MASK64 = (1 << 64) - 1


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
        self._blocks: dict[tuple[int, int], Tensor] = {}

    def keep_mask(self, layer: int, t0: int, t1: int, shape: tuple[int, ...], p: float) -> Tensor:
        """Bool keep-mask (t1 - t0, *shape) for samples t0..t1-1 of dropout layer ``layer``."""
        first, last = t0 // MASK_BLOCK, (t1 - 1) // MASK_BLOCK
        blocks = [self._block(layer, k, shape, p) for k in range(first, last + 1)]
        stacked = blocks[0] if len(blocks) == 1 else torch.cat(blocks)
        offset = first * MASK_BLOCK
        return stacked[t0 - offset : t1 - offset]

    def _block(self, layer: int, block: int, shape: tuple[int, ...], p: float) -> Tensor:
        key = (layer, block)
        cached = self._blocks.get(key)
        if cached is not None and tuple(cached.shape[1:]) == shape:
            return cached
        generator = torch.Generator(device=self.device)
        generator.manual_seed(stream_seed(self.seed, layer, block))
        uniform = torch.rand((MASK_BLOCK, *shape), generator=generator, device=self.device)
        mask = uniform >= p
        self._blocks[key] = mask
        return mask
