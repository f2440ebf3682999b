"""The Open Inference Protocol's binary ``BYTES`` encoding, for every input that takes it (texts,
encoded images): each element is a 4-byte little-endian length, then that many bytes."""

from __future__ import annotations

import struct
from typing import Any

from app.errors import InvalidTensorError


def binary_elements(where: str, binary: bytes, size: Any) -> list[bytes]:
    """The elements of the first ``size`` (``binary_data_size``) bytes of ``binary``; 400 naming
    ``where`` when the size does not fit the body or an element runs past it."""
    if not isinstance(size, int) or not 0 <= size <= len(binary):
        raise InvalidTensorError(
            f"{where}: binary_data_size {size!r} does not fit the {len(binary)} binary bytes sent"
        )
    raw, offset = binary[:size], 0
    elements: list[bytes] = []
    while offset < size:
        if offset + 4 > size:
            raise InvalidTensorError(f"{where}: binary data ends inside element {len(elements)}")
        (length,) = struct.unpack_from("<I", raw, offset)
        start, offset = offset + 4, offset + 4 + length
        if offset > size:
            raise InvalidTensorError(f"{where}: element {len(elements)} runs past binary_data_size")
        elements.append(raw[start:offset])
    return elements
