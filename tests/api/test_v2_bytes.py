"""The binary BYTES encoding shared by text and image inputs."""

from __future__ import annotations

import struct

import pytest

from app.errors import InvalidTensorError
from app.inputs.wire import binary_elements


def _encode(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def test_elements_come_back_as_sent_and_bytes_past_the_size_are_not_read() -> None:
    raw = _encode(b"abc", b"", "é".encode())
    assert binary_elements("x", raw + b"\xff" * 7, len(raw)) == [b"abc", b"", "é".encode()]


@pytest.mark.parametrize(
    ("binary", "size", "message"),
    [
        (_encode(b"abc"), 99, "does not fit"),
        (_encode(b"abc"), "7", "does not fit"),
        (_encode(b"abc")[:5], 5, "element 0 runs past"),
        (_encode(b"abc") + b"\x01\x00", 9, "ends inside element 1"),
    ],
)
def test_broken_payloads_are_400_naming_the_problem(
    binary: bytes, size: object, message: str
) -> None:
    with pytest.raises(InvalidTensorError, match=message):
        binary_elements("input 'x'", binary, size)
