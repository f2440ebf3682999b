"""first_non_finite_row: the first row holding a NaN or infinity, whatever the sums do."""

from __future__ import annotations

import math

import torch

from app.engine.finite import first_non_finite_row


def test_finite_tensors_have_no_such_row() -> None:
    assert first_non_finite_row([torch.randn(4, 3), torch.ones(4, dtype=torch.int64)]) is None
    assert first_non_finite_row([]) is None
    assert first_non_finite_row([torch.empty(0, 3)]) is None


def test_the_first_row_with_a_nan_or_an_infinity_in_any_tensor() -> None:
    first, second = torch.zeros(5, 2), torch.zeros(5, 3, dtype=torch.float32)
    second[3, 1] = math.inf
    assert first_non_finite_row([first, second]) == 3
    first[1, 0] = math.nan
    assert first_non_finite_row([first, second]) == 1
    assert first_non_finite_row([torch.tensor([[math.inf, -math.inf]])]) == 0  # sum is NaN


def test_finite_values_whose_sum_overflows_are_finite() -> None:
    huge = torch.full((3, 2), 1e308, dtype=torch.float64)
    assert not math.isfinite(float(huge.sum()))
    assert first_non_finite_row([huge]) is None
    huge[2, 1] = math.nan
    assert first_non_finite_row([huge]) == 2


def test_half_precision_values_are_summed_without_overflowing() -> None:
    values = torch.full((2, 4), 60000.0, dtype=torch.float16)  # a float16 sum would overflow
    assert first_non_finite_row([values]) is None
    values[1, 0] = math.inf
    assert first_non_finite_row([values]) == 1
