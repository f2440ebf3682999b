from __future__ import annotations

import pytest
import torch

from app.engine import masks
from app.engine.masks import (
    MASK_BLOCK,
    MaskSource,
    block_samples,
    drop_threshold,
    keep_from_units,
    scaled_from_units,
    stream_seed,
)


def test_stream_seed_is_deterministic_and_key_sensitive() -> None:
    assert stream_seed(1, 2, 3) == stream_seed(1, 2, 3)
    assert len({stream_seed(1, 2, 3), stream_seed(1, 2, 4), stream_seed(2, 2, 3)}) == 3
    assert 0 <= stream_seed(2**70, -5) < 2**63


def test_keep_mask_is_the_same_however_it_is_sliced() -> None:
    whole = MaskSource(7, torch.device("cpu")).keep_mask(0, 0, 300, (5,), 0.3)
    source = MaskSource(7, torch.device("cpu"))
    pieces = [source.keep_mask(0, a, b, (5,), 0.3) for a, b in [(0, 10), (10, 128), (128, 300)]]
    assert whole.shape == (300, 5)
    assert torch.equal(torch.cat(pieces), whole)
    # a fresh source for a shorter N gives the same first samples
    assert torch.equal(MaskSource(7, torch.device("cpu")).keep_mask(0, 0, 3, (5,), 0.3), whole[:3])


def test_keep_mask_differs_by_layer_and_seed_and_keeps_one_minus_p() -> None:
    source = MaskSource(7, torch.device("cpu"))
    a = source.keep_mask(0, 0, MASK_BLOCK, (1000,), 0.3)
    b = source.keep_mask(1, 0, MASK_BLOCK, (1000,), 0.3)
    c = MaskSource(8, torch.device("cpu")).keep_mask(0, 0, MASK_BLOCK, (1000,), 0.3)
    assert not torch.equal(a, b) and not torch.equal(a, c)
    kept = a.float().mean().item()
    assert abs(kept - 0.7) < 0.01  # 64k Bernoulli(0.7) draws: sd 0.0018


def test_block_size_shrinks_for_large_masks() -> None:
    assert block_samples((64,)) == 128
    assert block_samples((1024,)) == 64
    assert block_samples((32, 16, 16)) == 16
    assert block_samples((10**6,)) == 16


def test_drop_threshold_is_exact_to_2_pow_minus_17() -> None:
    assert drop_threshold(0.5) == 2**15
    assert drop_threshold(0.0) == 0
    assert abs(drop_threshold(0.3) / 2**16 - 0.3) <= 2**-17


def test_large_masks_are_chunk_invariant_too() -> None:
    shape = (8, 32, 32)  # 8192 elements: blocks of 16 samples
    whole = MaskSource(3, torch.device("cpu")).keep_mask(2, 0, 40, shape, 0.1)
    source = MaskSource(3, torch.device("cpu"))
    parts = [source.keep_mask(2, a, b, shape, 0.1) for a, b in [(0, 5), (5, 33), (33, 40)]]
    assert torch.equal(torch.cat(parts), whole)


def test_a_short_draw_is_the_start_of_a_longer_one() -> None:
    short = MaskSource(5, torch.device("cpu"))
    first = short.scaled_mask(0, 0, 10, (64,), 0.3, torch.float32)  # draws 16 samples
    more = short.scaled_mask(0, 0, 100, (64,), 0.3, torch.float32)  # redraws 112
    fresh = MaskSource(5, torch.device("cpu")).scaled_mask(0, 0, 128, (64,), 0.3, torch.float32)
    assert torch.equal(first, fresh[:10]) and torch.equal(more, fresh[:100])
    odd = MaskSource(5, torch.device("cpu")).keep_mask(1, 0, 3, (3, 1, 1), 0.5)  # 3 units/sample
    assert torch.equal(
        odd, MaskSource(5, torch.device("cpu")).keep_mask(1, 0, 128, (3, 1, 1), 0.5)[:3]
    )


@pytest.mark.parametrize("p", [0.0, 2**-18, 0.1, 0.3, 0.5, 0.9, 1 - 2**-18, 1.0])
def test_scaled_mask_is_the_keep_mask_times_the_inverse_keep_rate(p: float) -> None:
    units = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)  # every unit value
    keep = keep_from_units(units, p)
    scaled = scaled_from_units(units, p, torch.float32)
    expected = torch.where(keep, 1.0 / (1.0 - p), 0.0) if p < 1.0 else torch.zeros(2**16)
    assert torch.equal(scaled, expected)
    assert abs((1 - keep.float().mean().item()) - p) <= 2**-17
    half = scaled_from_units(units, p, torch.bfloat16)
    assert half.dtype == torch.bfloat16 and torch.equal(half, expected.to(torch.bfloat16))


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_unscaled_masks_are_the_keep_pattern_as_zeros_and_ones(p: float) -> None:
    units = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    ones = scaled_from_units(units, p, torch.float32, scaled=False)
    assert torch.equal(ones, keep_from_units(units, p).float())


def test_full_range_words_are_the_draws_of_random_from_to() -> None:
    # The faster draw (full range, sign bit flipped) gives random_(-2^63, 2^63 - 1)'s words:
    # seeded masks are what they were.
    generator = torch.Generator()
    generator.manual_seed(1234)
    words = torch.empty(100_003, dtype=torch.int64)
    masks._random_words(words, generator)
    generator.manual_seed(1234)
    expected = torch.empty(100_003, dtype=torch.int64).random_(
        -(2**63), 2**63 - 1, generator=generator
    )
    assert torch.equal(words, expected)


def test_first_positions_are_those_of_the_whole_draw() -> None:
    source = MaskSource(seed=5, device=torch.device("cpu"))
    whole = source.scaled_mask(2, 0, 20, (12, 8), 0.3, torch.float32)
    fresh = MaskSource(seed=5, device=torch.device("cpu"))
    first = fresh.scaled_mask(2, 0, 20, (12, 8), 0.3, torch.float32, first=3)
    assert first.shape == (20, 3, 8) and torch.equal(first, whole[:, :3])
