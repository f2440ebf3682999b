"""The tensor kind: float rows, integer ids with a range, variable-length rows padded per
request (with their lengths packed in front when the model takes them)."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from app.errors import InvalidInputError, InvalidTensorError
from app.inputs.base import INPUT_NAME, Rows, WireTensor, few_numbers
from app.inputs.tensor import LENGTHS_NAME, TensorKind
from app.registry.card_inputs import InputSpec
from tests.inputs.kind_contract import KindCase, check_input_kind

LIMIT = float(torch.finfo(torch.float32).max)


def _kind(**spec: Any) -> TensorKind:
    return TensorKind(InputSpec.model_validate(spec), LIMIT)


def _binary(name: str, datatype: str, shape: list[int], values: list[Any], fmt: str) -> WireTensor:
    raw = struct.pack(f"<{len(values)}{fmt}", *values)
    return WireTensor(name, datatype, shape, binary_size=len(raw), binary=raw)


def _inside(lo: float, hi: float, integral: bool) -> Any:
    def check(rows: Rows, probe: Tensor) -> bool:
        values = torch.tensor(np.concatenate([np.ravel(r) for r in rows]), dtype=torch.float64)
        whole = bool((values == values.round()).all()) if integral else True
        upper = bool((values < hi).all()) if integral else bool((values <= hi).all())
        return whole and upper and bool((values >= lo).all())

    return check


FLOAT_ROWS = [[0.5, -1.25, 3.0], [2.0, 0.0, -0.5]]
INT_ROWS = [[3, 0, 49], [7, 7, 1]]


def test_float_rows_keep_the_contract() -> None:
    flat = [v for row in FLOAT_ROWS for v in row]
    check_input_kind(
        KindCase(
            kind=_kind(shape=[3], range=[-2, 4]),
            rows=FLOAT_ROWS,
            v2_json=WireTensor(INPUT_NAME, "FP64", [2, 3], data=FLOAT_ROWS),
            v2_binary=_binary(INPUT_NAME, "FP64", [2, 3], flat, "d"),
            bad_rows=[[0.0, 0.0, 0.0], [0.0, 4.5, 0.0]],
            bad_field="inputs[1][1]",
            in_domain=_inside(-2, 4, integral=False),
            describes="tensor",
        )
    )


def test_integer_ids_keep_the_contract() -> None:
    flat = [v for row in INT_ROWS for v in row]
    check_input_kind(
        KindCase(
            kind=_kind(shape=[3], dtype="int64", range=[0, 50]),
            rows=INT_ROWS,
            v2_json=WireTensor(INPUT_NAME, "INT64", [2, 3], data=flat),
            v2_binary=_binary(INPUT_NAME, "INT64", [2, 3], flat, "q"),
            bad_rows=[[1, 2, 3], [4, 5, 50]],
            bad_field="inputs[1][2]",
            in_domain=_inside(0, 50, integral=True),
            describes="tensor",
        )
    )


SEQUENCES = [[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [[7.0, 8.0]]]


def test_variable_length_rows_keep_the_contract() -> None:
    kind = _kind(shape=[-1, 2], max_length=20, lengths=True)
    padded = [SEQUENCES[0], [[7.0, 8.0], [0.0, 0.0], [0.0, 0.0]]]
    tensors = {
        INPUT_NAME: WireTensor(INPUT_NAME, "FP32", [2, 3, 2], data=padded),
        LENGTHS_NAME: WireTensor(LENGTHS_NAME, "INT64", [2], data=[3, 1]),
    }
    assert torch.equal(kind.rows(kind.v2_rows(tensors), 2), kind.rows(SEQUENCES, 2))
    same_length = [SEQUENCES[0], SEQUENCES[0]]
    flat = [v for row in same_length for step in row for v in step]
    check_input_kind(
        KindCase(
            kind=kind,
            rows=same_length,
            v2_json=WireTensor(INPUT_NAME, "FP32", [2, 3, 2], data=same_length),
            v2_binary=_binary(INPUT_NAME, "FP32", [2, 3, 2], flat, "f"),
            bad_rows=[[[0.0, 0.0]], [[0.0, 0.0], [0.0]]],
            bad_field="inputs[1]",
            in_domain=_inside(0, 1, integral=False),
            describes="tensor",
        )
    )


def test_rows_are_padded_to_the_requests_bucket_with_lengths_in_front() -> None:
    kind = _kind(shape=[-1, 2], max_length=40, lengths=True)
    packed = kind.rows(SEQUENCES, 4)
    assert packed.shape == (2, 1 + 16 * 2)  # the smallest bucket, 16 steps
    assert packed[:, 0].tolist() == [3.0, 1.0]
    values = packed[:, 1:].view(2, 16, 2)
    assert values[0, :3].tolist() == SEQUENCES[0] and values[1, :1].tolist() == SEQUENCES[1]
    assert not values[0, 3:].any() and not values[1, 1:].any()
    long = [[[0.5, 0.5]] * 17]
    assert kind.rows(long, 1).shape == (1, 1 + 32 * 2)
    assert kind.rows([[[0.5, 0.5]] * 40], 1).shape == (1, 1 + 40 * 2)  # capped at max_length
    plain = _kind(shape=[-1, 2], max_length=40)
    assert plain.rows(SEQUENCES, 4).shape == (2, 16, 2)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[1, 2, 3], [1, 1.7, 3]], "inputs[1][1]: = 1.7 is not an integer"),
        ([[1, 2, 3], [1, 2, 50]], "inputs[1][2]: = 50 is outside the input's range [0, 50)"),
        ([[-1, 2, 3]], "inputs[0][0]: = -1 is outside the input's range [0, 50)"),
        ([[1, 2]], "inputs[0]: has shape [2], expected [3]"),
    ],
)
def test_bad_integer_ids_are_refused_naming_row_and_position(rows: Any, message: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        _kind(shape=[3], dtype="int64", range=[0, 50]).rows(rows, 4)
    assert refused.value.message == message


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[[1.0, 2.0]] * 41], "inputs[0]: has 41 steps; this model takes 1 to 40"),
        ([[[1.0, 2.0]], []], "inputs[1]: has shape [0], expected [-1, 2] (-1: any length)"),
        ([[[1.0, 2.0]], [[1.0, 2.0, 3.0]]], "inputs[1]: has shape [1, 3], expected [-1, 2]"),
        ([[[1.0, 2.0], [1.0, float("nan")]]], "inputs[0][1][1]: = nan is NaN or infinite"),
        ([1.0], "inputs[0]: must be a nested list of shape [-1, 2]"),
    ],
)
def test_bad_sequences_are_refused_naming_the_row(rows: Any, message: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        _kind(shape=[-1, 2], max_length=40).rows(rows, 4)
    assert refused.value.message.startswith(message), refused.value.message


def test_v2_lengths_must_fit_the_tensor() -> None:
    kind = _kind(shape=[-1, 2], max_length=40, lengths=True)
    tensor = WireTensor(INPUT_NAME, "FP32", [1, 2, 2], data=[1.0, 2.0, 3.0, 4.0])
    for lengths, message in (([3], "data[0] = 3 is not in 1..2"), ([1, 1], "is not [1]")):
        wire = WireTensor(LENGTHS_NAME, "INT64", [len(lengths)], data=lengths)
        with pytest.raises(InvalidTensorError, match=message.replace("[", r"\[")):
            kind.v2_rows({INPUT_NAME: tensor, LENGTHS_NAME: wire})


def test_the_widget_follows_the_shape() -> None:
    assert _kind(shape=[-1, 13], max_length=9).describe().widget == "sequence"
    assert _kind(shape=[8], dtype="int32", range=[0, 9]).describe().widget == "integers"
    assert _kind(shape=[1, 8, 8]).describe().widget == "canvas"
    assert _kind(shape=[1, 8, 8]).describe().grid == [8, 8]
    assert _kind(shape=[13]).describe().widget == "numbers"
    named = TensorKind(InputSpec(shape=[2]), LIMIT, feature_names=["a", "b"])
    assert named.describe().widget == "fields"


def test_a_float_probe_without_a_range_is_todays_uniform_rows() -> None:
    generator = torch.Generator().manual_seed(0)
    expected = torch.rand((3, 4), generator=generator).double()
    assert torch.equal(_kind(shape=[4]).probe(3), expected)


def test_few_numbers_counts_list_lengths_and_gives_up_on_a_crafted_body() -> None:
    assert few_numbers([[0.0] * 64]) and few_numbers([[[0.0] * 8] * 8] * 4)
    assert not few_numbers([[0.0] * 64] * 65)  # 4,160 numbers
    assert not few_numbers([[0.0] * 1_000_000])  # one row, a million numbers: one length read
    assert not few_numbers([[[0.0]] * 300])  # more lists than it looks at
    assert few_numbers(np.zeros((2, 64))) and not few_numbers(np.zeros((2, 4096)))
    assert few_numbers([[1, [2, 3]], 4])  # irregular rows are counted, then refused elsewhere
