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
import threading

import torch
from torch import Tensor

from app.engine.sampling import ROW_ALIGN

MASK_BLOCK = 128
"""Most samples per block; layers with large masks use smaller blocks."""
DRAW_STEP = ROW_ALIGN
"""Masks of a block are drawn for the samples a run needs, rounded up to this step."""
_BLOCK_ELEMENTS = 1 << 16
_MASK64 = (1 << 64) - 1
_UNIT_RANGE = 1 << 16
_WORD_MIN = -(2**63)


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
        self._spans: dict[int, tuple[int, Tensor]] = {}
        """layer -> (first sample, random units of the samples from it) of the last draw."""

    def keep_mask(self, layer: int, t0: int, t1: int, shape: tuple[int, ...], p: float) -> Tensor:
        """Bool keep-mask (t1 - t0, *shape) for samples t0..t1-1 of dropout layer ``layer``."""
        return keep_from_units(self._units(layer, t0, t1, shape), p)

    def scaled_mask(
        self,
        layer: int,
        t0: int,
        t1: int,
        shape: tuple[int, ...],
        p: float,
        dtype: torch.dtype,
        first: int | None = None,
        scaled: bool = True,
    ) -> Tensor:
        """The keep-mask as ``dtype`` times 1 / (1 - p) (0 or 1 without ``scaled``): multiply
        activations by it. With ``first``, masks drawn for ``shape`` (..., L, F) are kept (and
        converted) for the first positions of their next-to-last dimension only:
        (t1 - t0, ..., first, F)."""
        units = self._units(layer, t0, t1, shape)
        kept = units if first is None else units[..., :first, :]
        return scaled_from_units(kept, p, dtype, scaled)

    def _units(self, layer: int, t0: int, t1: int, shape: tuple[int, ...]) -> Tensor:
        """Random units (t1 - t0, *shape) of samples t0..t1-1, from the cached span of blocks
        when it holds them, else from a new span drawn from t0's block on (so a run in several
        chunks draws each block once, plus the redraw of a partly drawn block). Only the asked
        samples are turned into masks: a draw rounded up to ``DRAW_STEP`` converts no more."""
        cached = self._spans.get(layer)
        if cached is not None and tuple(cached[1].shape[1:]) == shape:
            start, units = cached
            if start <= t0 and t1 <= start + units.shape[0]:
                return units[t0 - start : t1 - start]
        size = block_samples(shape)
        start = t0 // size * size
        units = self._draw_span(layer, start // size, t1, shape)
        self._spans[layer] = (start, units)
        return units[t0 - start : t1 - start]

    def _draw_span(self, layer: int, first: int, t1: int, shape: tuple[int, ...]) -> Tensor:
        """Random units (samples, *shape) int16 of whole blocks ``first``, ``first`` + 1, ...
        up to the block holding sample t1 - 1, of which only the first samples up to t1 rounded
        up to ``DRAW_STEP`` are drawn (a longer draw repeats a shorter one's units, as each
        block's generator fills its units in order). One tensor: no copy to join blocks."""
        size = block_samples(shape)
        last = (t1 - 1) // size
        tail = min(-(-(t1 - last * size) // DRAW_STEP) * DRAW_STEP, size)
        counts = [size] * (last - first) + [tail]
        if not shape or shape[-1] % 4:  # rare: blocks drawn apart and joined
            parts = [self._draw(layer, first + k, n, shape) for k, n in enumerate(counts)]
            return parts[0] if len(parts) == 1 else torch.cat(parts)
        words = torch.empty(
            (sum(counts), *shape[:-1], shape[-1] // 4), dtype=torch.int64, device=self.device
        )
        generator = _generator(self.device)
        offset = 0
        for k, n in enumerate(counts):
            generator.manual_seed(stream_seed(self.seed, layer, first + k))
            _random_words(words[offset : offset + n], generator)
            offset += n
        return words.view(torch.int16)

    def _draw(self, layer: int, block: int, samples: int, shape: tuple[int, ...]) -> Tensor:
        """Random units (samples, *shape) int16, uniform over [-2^15, 2^15), for the first
        ``samples`` samples of a block: 16 random bits per unit, taken four at a time from
        64-bit words (far cheaper than one torch.rand float per unit)."""
        generator = _generator(self.device)
        generator.manual_seed(stream_seed(self.seed, layer, block))
        elements = samples * math.prod(shape)
        words = torch.empty((elements + 3) // 4, dtype=torch.int64, device=self.device)
        _random_words(words, generator)
        return words.view(torch.int16)[:elements].view(samples, *shape)


def _random_words(words: Tensor, generator: torch.Generator) -> None:
    """Fill int64 ``words`` with the generator's 64-bit draws ``r`` as ``r - 2**63``: what
    ``random_(-2**63, 2**63 - 1)`` gives (``r mod (2**64 - 1) - 2**63``; the two differ only
    for r = 2**64 - 1, once in 2**64 draws) without its 64-bit modulo per word: torch's
    full-range draw (``r`` as int64) with the sign bit flipped, 12% faster."""
    words.random_(_WORD_MIN, None, generator=generator).bitwise_xor_(_WORD_MIN)


_GENERATORS = threading.local()


def _generator(device: torch.device) -> torch.Generator:
    """This thread's generator for ``device`` (re-seeded before every draw)."""
    generators: dict[torch.device, torch.Generator] = _GENERATORS.__dict__.setdefault(
        "by_device", {}
    )
    generator = generators.get(device)
    if generator is None:
        generator = generators[device] = torch.Generator(device=device)
    return generator


def keep_from_units(units: Tensor, p: float) -> Tensor:
    """Bool keep-mask: a unit at or above the drop threshold keeps its activation."""
    lo = drop_threshold(p) - 2**15
    if lo >= 2**15:  # p within 2^-17 of 1: the threshold does not fit in int16, drop all
        return torch.zeros(units.shape, dtype=torch.bool, device=units.device)
    return units >= lo


def scaled_from_units(units: Tensor, p: float, dtype: torch.dtype, scaled: bool = True) -> Tensor:
    """``keep_from_units(units, p)`` as ``dtype`` times 1 / (1 - p), the same 0/1 pattern
    (without ``scaled``: 0 or 1, for a caller that multiplies by the scale itself).

    Built with integer clamp and subtraction (vectorised on the CPU) rather than a comparison
    and a select (which are not, and cost twice as much): clamping to [lo - 1, lo] maps dropped
    units to lo - 1 and kept ones to lo, so subtracting lo - 1 gives exactly 0 or 1.
    """
    lo = drop_threshold(p) - 2**15
    if lo >= 2**15:  # p within 2^-17 of 1: drop all (and no 1 / (1 - p) to take)
        return torch.zeros(units.shape, dtype=dtype, device=units.device)
    scale = 1.0 / (1.0 - p) if scaled else 1.0
    if lo <= -(2**15):
        return torch.full(units.shape, scale, dtype=dtype, device=units.device)
    keep = units.clamp(lo - 1, lo).sub_(lo - 1).to(dtype)  # 0 or 1
    # converted, then scaled in place: int16 times a float would convert through a copy
    return keep.mul_(scale) if scaled else keep


def block_samples(shape: tuple[int, ...]) -> int:
    """Samples per mask block for masks of ``shape``: MASK_BLOCK, halved while a block would
    exceed 65,536 elements, never below ``DRAW_STEP`` (so small-N requests do not draw huge
    blocks)."""
    elements = max(1, math.prod(shape))
    size = MASK_BLOCK
    while size > DRAW_STEP and size * elements > _BLOCK_ELEMENTS:
        size //= 2
    return size


def drop_threshold(p: float) -> int:
    """16-bit threshold: a uniform unit in [0, 2^16) below it drops (|P(drop) - p| <= 2^-17)."""
    return round(p * _UNIT_RANGE)
