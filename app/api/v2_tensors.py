"""Open Inference Protocol tensors <-> mcdrop input rows and output statistics.

Inputs come as JSON ``data`` (flat or nested, row-major) or, with the binary tensor data
extension, as raw little-endian bytes after a JSON header of ``Inference-Header-Content-Length``
bytes. Outputs are one tensor per statistic, as JSON ``data`` or raw bytes when asked for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError
from torch import Tensor

from app.api.errors import validation_message
from app.api.v2_images import BYTES, image_input_metadata, image_rows
from app.api.v2_schemas import (
    InferenceRequest,
    MCParameters,
    RequestInput,
    ResponseOutput,
    TensorMetadata,
)
from app.api.v2_text import text_metadata, text_rows
from app.dataplane.policy import PredictOptions
from app.engine.predictor import Prediction
from app.errors import InvalidTensorError
from app.registry.loading import ServedModel
from app.tasks import OutputTensor

INPUT_NAME = "input"
SAMPLES_OUTPUT = "samples"
"""Every MC pass's output, (B, N, ...); returned only when asked for by name."""

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

_NUMPY_OUT: dict[str, type[np.generic]] = {"INT64": np.int64, "BOOL": np.bool_, "FP32": np.float32}


@dataclass(frozen=True)
class RequestedOutput:
    """An output to return and whether as raw bytes (binary tensor data extension)."""

    name: str
    binary: bool


@dataclass(frozen=True)
class DecodedRequest:
    """What the data plane needs from an inference request, and how to answer it."""

    id: str | None
    rows: np.ndarray | list[Any]
    """(B, *input_shape), in the datatype the request sent; texts for a text model."""
    options: PredictOptions
    outputs: list[RequestedOutput]


def input_metadata(model: ServedModel) -> list[TensorMetadata]:
    """The one input tensor: (batch, *row shape) in the card's dtype; BYTES for text."""
    if model.text is not None:
        return [text_metadata(INPUT_NAME)]
    if model.images is not None:
        return [image_input_metadata(model, INPUT_NAME)]
    datatype = "FP64" if model.card.input.dtype == "float64" else "FP32"
    return [TensorMetadata(name=INPUT_NAME, datatype=datatype, shape=[-1, *model.card.input.shape])]


def output_metadata(model: ServedModel) -> list[TensorMetadata]:
    """Every output of the model's task, then the optional ``samples``."""
    tensors = [
        TensorMetadata(name=output.name, datatype=output.datatype, shape=[-1, *output.shape])
        for output in _statistics(model)
    ]
    dims = model.task.value_dims(model.output_shape)
    tensors.append(TensorMetadata(name=SAMPLES_OUTPUT, datatype="FP32", shape=[-1, -1, *dims]))
    return tensors


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tail) of a request body."""
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if not 0 <= length <= len(body):
        raise InvalidTensorError(
            f"Inference-Header-Content-Length {header_length!r} does not fit a "
            f"{len(body)}-byte body"
        )
    return body[:length], body[length:]


def decode_request(header: bytes, binary: bytes, model: ServedModel) -> DecodedRequest:
    """Validate the request against the protocol and the model; 400 with the reason if not."""
    try:
        request = InferenceRequest.model_validate_json(header)
    except ValidationError as exc:
        raise InvalidTensorError(validation_message(exc)) from None
    try:
        parameters = MCParameters.model_validate(request.parameters or {})
    except ValidationError as exc:
        raise InvalidTensorError(validation_message(exc, root="parameters")) from None
    if len(request.inputs) != 1 or request.inputs[0].name != INPUT_NAME:
        names = [tensor.name for tensor in request.inputs]
        raise InvalidTensorError(
            f"model '{model.name}' takes exactly one input named '{INPUT_NAME}', got {names}"
        )
    array: np.ndarray | list[Any]
    if model.text is not None:
        array = text_rows(request.inputs[0], binary)
    elif model.images is not None and request.inputs[0].datatype == BYTES:
        array = image_rows(request.inputs[0], binary)
    else:
        array = _input_array(request.inputs[0], binary, model.card.input.shape)
    outputs = _requested_outputs(request, parameters.binary_data_output, model)
    options = parameters.options(any(output.name == SAMPLES_OUTPUT for output in outputs))
    return DecodedRequest(request.id, array, options, outputs)


def encode_outputs(
    model: ServedModel, prediction: Prediction, outputs: Sequence[RequestedOutput]
) -> tuple[list[ResponseOutput], bytes]:
    """One response tensor per requested output, and the raw bytes of the binary ones."""
    tensors: list[ResponseOutput] = []
    blobs: list[bytes] = []
    datatypes = {output.name: output.datatype for output in _statistics(model)}
    for output in outputs:
        values = _output_tensor(model, prediction, output.name)
        datatype = datatypes.get(output.name, "FP32")
        array: np.ndarray = values.numpy().astype(_NUMPY_OUT[datatype])
        tensor = ResponseOutput(name=output.name, datatype=datatype, shape=list(array.shape))
        if output.binary:
            raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
            tensor.parameters = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            tensor.data = array.reshape(-1).tolist()
        tensors.append(tensor)
    return tensors, b"".join(blobs)


def _statistics(model: ServedModel) -> list[OutputTensor]:
    dims = model.task.value_dims(model.output_shape)
    return model.task.outputs(dims, model.card.conformal is not None)


def _requested_outputs(
    request: InferenceRequest, binary_default: bool, model: ServedModel
) -> list[RequestedOutput]:
    names = [output.name for output in _statistics(model)]
    if request.outputs is None:
        return [RequestedOutput(name, binary_default) for name in names]
    known = (*names, SAMPLES_OUTPUT)
    requested = []
    for output in request.outputs:
        if output.name not in known:
            raise InvalidTensorError(
                f"unknown output '{output.name}'; model '{model.name}' has {', '.join(known)}"
            )
        binary = (output.parameters or {}).get("binary_data", binary_default)
        requested.append(RequestedOutput(output.name, bool(binary)))
    return requested


def _input_array(tensor: RequestInput, binary: bytes, row_shape: list[int]) -> np.ndarray:
    where = f"input '{tensor.name}'"
    dtype = DATATYPES.get(tensor.datatype)
    if dtype is None:
        raise InvalidTensorError(
            f"{where}: datatype '{tensor.datatype}' is not supported; use one of "
            f"{', '.join(DATATYPES)}"
        )
    expected = [-1, *row_shape]
    if len(tensor.shape) != len(expected) or tensor.shape[1:] != row_shape or tensor.shape[0] < 1:
        raise InvalidTensorError(f"{where}: shape {tensor.shape} does not match {expected}")
    count = math.prod(tensor.shape)
    binary_size = (tensor.parameters or {}).get("binary_data_size")
    if binary_size is not None:
        array = _binary_array(where, binary, binary_size, dtype, count)
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


def _json_array(where: str, data: list[Any], dtype: type[np.generic], count: int) -> np.ndarray:
    flat = _flatten(data)
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


def _flatten(data: list[Any]) -> list[Any]:
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


def _output_tensor(model: ServedModel, prediction: Prediction, name: str) -> Tensor:
    if name == SAMPLES_OUTPUT:
        assert prediction.samples is not None
        return prediction.samples.transpose(0, 1)
    return model.task.output_tensor(prediction, name)
