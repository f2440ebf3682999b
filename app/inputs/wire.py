"""Decoding Open Inference Protocol tensors: JSON ``data`` (flat or nested, row-major), raw
little-endian binary data, and the ``BYTES`` layout (each element a 4-byte little-endian length,
then that many bytes). Pure numpy; a malformed tensor is an InvalidTensorError (400)."""

from __future__ import annotations

import base64
import binascii
import math
import struct
from typing import Any

import numpy as np

from app.errors import InvalidTensorError
from app.inputs.base import WireTensor

BYTES = "BYTES"
DATATYPES: dict[str, type[np.generic]] = {
    "FP32": np.float32,
    "FP64": np.float64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
}
V2_DATATYPE = {"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64"}
"""A card dtype's v2 datatype."""


def numeric_array(tensor: WireTensor) -> np.ndarray:
    """The tensor's values in its shape and datatype; 400 naming the input."""
    where = tensor.where
    dtype = DATATYPES.get(tensor.datatype)
    if dtype is None:
        raise InvalidTensorError(
            f"{where}: datatype '{tensor.datatype}' is not supported; use one of "
            f"{', '.join(DATATYPES)}"
        )
    if any(d < 0 for d in tensor.shape):
        raise InvalidTensorError(f"{where}: shape {tensor.shape} has a negative dimension")
    count = math.prod(tensor.shape)
    if tensor.binary_size is not None:
        array = _binary_array(where, tensor.binary, tensor.binary_size, dtype, count)
    elif tensor.data is not None:
        array = _json_array(where, tensor.data, dtype, count)
    else:
        raise InvalidTensorError(f"{where}: has neither 'data' nor binary data")
    return array.reshape(tensor.shape)


def _binary_array(
    where: str, binary: bytes, size: Any, dtype: type[np.generic], count: int
) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize
    if not isinstance(size, int) or size != count * itemsize or size > len(binary):
        raise InvalidTensorError(
            f"{where}: binary_data_size {size} does not hold {count} values of "
            f"{itemsize} bytes ({len(binary)} binary bytes sent)"
        )
    return np.frombuffer(binary[:size], dtype=np.dtype(dtype).newbyteorder("<"))


def bytes_elements(tensor: WireTensor) -> list[bytes]:
    """The elements of a BYTES tensor sent as binary data (length-prefixed)."""
    return binary_elements(tensor.where, tensor.binary, tensor.binary_size)


def encoded_elements(tensor: WireTensor, noun: str) -> list[bytes]:
    """The files (images, audio clips) of a ``BYTES`` tensor of shape [B] or [B, 1]: base64
    strings (or ``{"b64"}`` objects) as JSON data, length-prefixed bytes as binary data; 400
    naming the input. ``noun`` is what they are, in the plural (``images``)."""
    shape, where = tensor.shape, tensor.where
    if not (len(shape) in (1, 2) and shape[0] >= 1 and (len(shape) == 1 or shape[1] == 1)):
        raise InvalidTensorError(f"{where}: BYTES {noun} need shape [B] or [B, 1], got {shape}")
    if tensor.binary_size is not None:
        elements = bytes_elements(tensor)
    elif tensor.data is not None:
        elements = [_json_element(where, index, item) for index, item in enumerate(tensor.data)]
    else:
        raise InvalidTensorError(f"{where}: has neither 'data' nor binary data")
    if len(elements) != math.prod(shape):
        raise InvalidTensorError(
            f"{where}: holds {len(elements)} {noun}, shape needs {math.prod(shape)}"
        )
    return elements


def _json_element(where: str, index: int, item: Any) -> bytes:
    if isinstance(item, list) and len(item) == 1:
        item = item[0]
    if isinstance(item, dict) and set(item) == {"b64"}:
        item = item["b64"]
    if not isinstance(item, str):
        raise InvalidTensorError(f"{where}: data[{index}] is not a base64 string")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidTensorError(f"{where}: data[{index}] is not valid base64") from None


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


def _json_array(where: str, data: list[Any], dtype: type[np.generic], count: int) -> np.ndarray:
    flat = flatten(data)
    if len(flat) != count:
        raise InvalidTensorError(f"{where}: data holds {len(flat)} values, shape needs {count}")
    integral = np.issubdtype(dtype, np.integer)
    for index, value in enumerate(flat):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidTensorError(f"{where}: data[{index}] is {value!r}, not a number")
        if integral and not isinstance(value, int):
            raise InvalidTensorError(f"{where}: data[{index}] = {value} is not an integer")
    try:
        return np.array(flat, dtype=dtype)
    except OverflowError:
        raise InvalidTensorError(
            f"{where}: a value is out of range for {np.dtype(dtype).name}"
        ) from None


_END = object()


def flatten(data: list[Any]) -> list[Any]:
    """Leaves of a nested list, row-major, without recursion (deep nesting cannot overflow)."""
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            flat.append(item)
    return flat
