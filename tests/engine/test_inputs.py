from __future__ import annotations

import math

import pytest
import torch

from app.engine.inputs import rows_to_tensor
from app.errors import InvalidInputError


def test_converts_nested_rows() -> None:
    tensor = rows_to_tensor([[[1, 2], [3, 4]]], (2, 2), max_rows=4)
    assert tensor.dtype == torch.float64
    assert tensor.tolist() == [[[1.0, 2.0], [3.0, 4.0]]]


@pytest.mark.parametrize(
    ("rows", "field", "message"),
    [
        ([], "inputs", "at least one row"),
        ([[1, 2]] * 5, "inputs", "more than the limit of 4"),
        ([[1, 2], [1, 2, 3]], "inputs[1]", "has shape [3], expected [2]"),
        ([[1, 2], [3, 4], [5]], "inputs[2]", "has shape [1], expected [2]"),
        ([[1, 2], ["a", 2]], "inputs[1]", "nested list of numbers"),
        ([[1, 2], [math.nan, 2]], "inputs[1]", "NaN or infinity"),
        ([[1, 2], [3, math.inf]], "inputs[1]", "NaN or infinity"),
        ([[1, 2, 3], [1, 2, 3]], "inputs[0]", "has shape [3], expected [2]"),
    ],
)
def test_rejects_bad_rows_naming_the_field(rows: list[object], field: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        rows_to_tensor(rows, (2,), max_rows=4)
    assert caught.value.field == field
    assert message in caught.value.message
