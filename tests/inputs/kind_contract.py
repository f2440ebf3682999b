"""The input-kind contract of :mod:`app.inputs.base`, as one check every kind runs.

A kind's test builds a :class:`KindCase` (the kind, rows a client sends, the same rows as v2
JSON and binary tensors, a bad row and the field its error must name, and what "inside the
domain" means for it) and calls ``check_input_kind``. Each check fails if the kind broke that
part of the contract: a v2 form parsed differently from v1, an error naming no field, a probe
outside the domain or one its own parser refuses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor

from app.errors import InvalidInputError, InvalidTensorError
from app.inputs.base import INPUT_NAME, InputKind, Rows, WireTensor


@dataclass(frozen=True)
class KindCase:
    """One kind with what its contract check needs."""

    kind: InputKind
    rows: Rows
    """Good v1 rows (JSON values as a client sends them)."""
    v2_json: WireTensor
    """The same rows as a v2 tensor with JSON data."""
    v2_binary: WireTensor
    """The same rows as a v2 tensor with binary data."""
    bad_rows: Rows
    bad_field: str
    """What the error for ``bad_rows`` must start with (``inputs[1]``, ``inputs[0][3]``)."""
    in_domain: Callable[[Rows, Tensor], bool]
    """Whether example rows (and their input tensor) lie in the kind's domain."""
    describes: str
    """``describe().kind``."""


def check_input_kind(case: KindCase) -> None:
    """Every part of the contract, on one kind."""
    kind, count = case.kind, len(case.rows)
    parsed = kind.rows(case.rows, max_rows=count)
    assert parsed.shape[0] == count
    for wire in (case.v2_json, case.v2_binary):
        from_v2 = kind.rows(kind.v2_rows({INPUT_NAME: wire}), max_rows=count)
        assert from_v2.dtype == parsed.dtype and torch.equal(from_v2, parsed), "v2 != v1"
    _check_errors(case)
    _check_description(case)
    _check_probe(case)


def _check_errors(case: KindCase) -> None:
    kind = case.kind
    with pytest.raises(InvalidInputError) as bad:
        kind.rows(case.bad_rows, max_rows=len(case.bad_rows))
    assert bad.value.message.startswith(f"{case.bad_field}: "), bad.value.message
    with pytest.raises(InvalidInputError) as many:
        kind.rows(case.rows, max_rows=len(case.rows) - 1)
    assert many.value.message.startswith("inputs: ") and "limit" in many.value.message
    with pytest.raises(InvalidInputError, match=r"^inputs: "):
        kind.rows([], max_rows=4)
    with pytest.raises(InvalidTensorError, match="input"):
        kind.v2_rows({INPUT_NAME: case.v2_json, "unexpected": case.v2_json})
    empty = WireTensor(INPUT_NAME, case.v2_json.datatype, case.v2_json.shape)
    with pytest.raises(InvalidTensorError, match="neither 'data' nor binary data"):
        kind.v2_rows({INPUT_NAME: empty})


def _check_description(case: KindCase) -> None:
    described = case.kind.describe()
    assert described.kind == case.describes
    assert described.summary
    inputs = case.kind.v2_inputs()
    assert inputs[0].name == INPUT_NAME
    assert case.kind.v2_names() == {tensor.name for tensor in inputs}
    assert inputs[0].shape[0] == -1, "the batch axis of a v2 input is variable"
    if described.kind not in ("image", "audio"):  # files: BYTES [B], rows (C, H, W), [T, F]
        assert inputs[0].shape[1:] == described.shape


def _check_probe(case: KindCase) -> None:
    kind = case.kind
    examples: Any = kind.example_rows(3)
    assert len(examples) == 3
    probe = kind.probe(3)
    assert torch.equal(probe, kind.rows(examples, max_rows=3)), "probe != its rows parsed"
    assert torch.equal(probe, kind.probe(3)), "the probe must be deterministic"
    assert case.in_domain(examples, probe), "the probe lies outside the kind's domain"
