"""Text inputs of the Open Inference Protocol: a ``BYTES`` tensor [B] of texts, or [B, 2] of
(text, text_pair). JSON ``data`` holds strings; binary data holds each element as a 4-byte
little-endian length then its UTF-8 bytes (the protocol's BYTES encoding)."""

from __future__ import annotations

import math
from typing import Any

from app.api.v2_bytes import binary_elements
from app.api.v2_schemas import RequestInput, TensorMetadata
from app.errors import InvalidTensorError

TEXT_DATATYPE = "BYTES"


def text_metadata(name: str) -> TensorMetadata:
    """The input of a text model: BYTES [B] (pairs: [B, 2], as the model's parameters say)."""
    return TensorMetadata(name=name, datatype=TEXT_DATATYPE, shape=[-1])


def text_rows(tensor: RequestInput, binary: bytes) -> list[Any]:
    """Rows for the text encoder: strings, or ``{"text", "text_pair"}`` objects for [B, 2]."""
    where = f"input '{tensor.name}'"
    if tensor.datatype != TEXT_DATATYPE:
        raise InvalidTensorError(
            f"{where}: a text model takes datatype BYTES, got {tensor.datatype}"
        )
    shape = tensor.shape
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 2) or shape[0] < 1:
        raise InvalidTensorError(f"{where}: shape {shape} is neither [B] nor [B, 2] (B >= 1)")
    count = math.prod(shape)
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is not None:
        texts = _binary_texts(where, binary, size, count)
    elif tensor.data is not None:
        texts = _json_texts(where, tensor.data, count)
    else:
        raise InvalidTensorError(f"{where}: has neither 'data' nor binary data")
    if len(shape) == 1:
        return list(texts)
    return [{"text": texts[i], "text_pair": texts[i + 1]} for i in range(0, count, 2)]


def _json_texts(where: str, data: list[Any], count: int) -> list[str]:
    flat = [item for row in data for item in (row if isinstance(row, list) else [row])]
    if len(flat) != count:
        raise InvalidTensorError(f"{where}: data holds {len(flat)} values, shape needs {count}")
    for index, value in enumerate(flat):
        if not isinstance(value, str):
            raise InvalidTensorError(f"{where}: data[{index}] is {value!r}, not a string")
    return flat


def _binary_texts(where: str, binary: bytes, size: Any, count: int) -> list[str]:
    elements = binary_elements(where, binary, size)
    if len(elements) != count:
        raise InvalidTensorError(
            f"{where}: binary data holds {len(elements)} elements, shape needs {count}"
        )
    texts = []
    for index, element in enumerate(elements):
        try:
            texts.append(element.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidTensorError(f"{where}: element {index} is not UTF-8") from None
    return texts
