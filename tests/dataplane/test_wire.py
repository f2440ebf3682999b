"""Messages between HTTP workers and the inference process: tensors arrive bit for bit (inline
or through shared memory, which the receiver unlinks), mcdrop's errors arrive whole."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from app.dataplane import wire
from app.errors import InvalidInputError, OverloadedError


def _round_trip(message: Any) -> Any:
    frame = wire.dumps(message)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    return pickle.loads(frame[4:])


def _shm_blocks() -> set[str]:
    return {path.name for path in Path("/dev/shm").glob("psm_*")}


@pytest.mark.parametrize(
    "tensor",
    [
        torch.arange(12, dtype=torch.float32).reshape(3, 4),
        torch.tensor(2.5, dtype=torch.float64),  # 0-d
        torch.tensor([1.0]).expand(5),  # stride 0
        torch.arange(20, dtype=torch.int64).reshape(4, 5).t(),  # not contiguous
        torch.tensor([True, False, True]),
        torch.tensor([1.5, -2.25], dtype=torch.bfloat16),  # no numpy dtype: bytes
        torch.empty(0, 3),
    ],
)
def test_small_tensors_arrive_bit_for_bit(tensor: torch.Tensor) -> None:
    got = _round_trip(("reply", 1, True, {"t": tensor}))[3]["t"]
    assert got.dtype == tensor.dtype and got.shape == tensor.shape
    assert got.is_contiguous() and torch.equal(got, tensor)


def test_a_large_tensor_goes_through_shared_memory_that_the_receiver_unlinks() -> None:
    tensor = torch.randn(wire.SHM_MIN_BYTES // 4 + 7, dtype=torch.float32)
    before = _shm_blocks()
    frame = wire.dumps(("predict", 3, tensor))
    assert len(frame) < 1000  # the data is not in the frame
    created = _shm_blocks() - before
    assert len(created) == 1
    got = pickle.loads(frame[4:])[2]
    assert torch.equal(got, tensor)
    assert _shm_blocks() - before == set()  # unlinked on arrival


def test_mcdrop_errors_arrive_with_their_status_and_message() -> None:
    for error in (InvalidInputError("n_samples", "must be at least 1"), OverloadedError("m", 4)):
        got = wire.unpack_error(_round_trip(wire.pack_error(error)))
        assert type(got) is type(error)
        assert got.status_code == error.status_code and got.message == error.message
        assert str(got) == str(error)
