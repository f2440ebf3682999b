"""Open Inference Protocol ``BYTES`` input tensors of encoded images (PNG, JPEG, WebP).

Shape ``[B]`` (or ``[B, 1]``), one image per element: as JSON ``data``, base64 strings (or
``{"b64": ...}`` objects); with the binary tensor data extension, each element as a 4-byte
little-endian length followed by its bytes (Triton's BYTES layout).
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

from app.api.v2_bytes import binary_elements
from app.api.v2_schemas import RequestInput, TensorMetadata
from app.engine.images import FORMATS
from app.errors import InvalidTensorError
from app.registry.loading import ServedModel

BYTES = "BYTES"


def image_input_metadata(model: ServedModel, name: str) -> TensorMetadata:
    """The input of an image model: encoded images, with what is done to them."""
    assert model.images is not None
    return TensorMetadata(
        name=name,
        datatype=BYTES,
        shape=[-1],
        parameters={
            "content_type": "image",
            "formats": [f.lower() for f in FORMATS],
            "encoding": "base64 strings in JSON data; length-prefixed bytes as binary data",
            "preprocessing": model.images.describe(),
            "also_accepts": f"FP32 [-1, {', '.join(map(str, model.card.input.shape))}] "
            "preprocessed rows",
        },
    )


def image_rows(tensor: RequestInput, binary: bytes) -> list[bytes]:
    """The encoded images of a BYTES input tensor, one per batch row; 400 with the reason."""
    where = f"input '{tensor.name}'"
    shape = tensor.shape
    if not (len(shape) in (1, 2) and shape[0] >= 1 and (len(shape) == 1 or shape[1] == 1)):
        raise InvalidTensorError(f"{where}: BYTES images need shape [B] or [B, 1], got {shape}")
    count = math.prod(shape)
    binary_size = (tensor.parameters or {}).get("binary_data_size")
    if binary_size is not None:
        elements = binary_elements(where, binary, binary_size)
    elif tensor.data is not None:
        elements = [_json_element(where, index, item) for index, item in enumerate(tensor.data)]
    else:
        raise InvalidTensorError(f"{where}: has neither 'data' nor binary data")
    if len(elements) != count:
        raise InvalidTensorError(f"{where}: holds {len(elements)} images, shape needs {count}")
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
