"""Open Inference Protocol tensors <-> mcdrop input rows and output statistics.

Inputs come as JSON ``data`` (flat or nested, row-major) or, with the binary tensor data
extension, as raw little-endian bytes after a JSON header of ``Inference-Header-Content-Length``
bytes. Outputs are one tensor per statistic, as JSON ``data`` or raw bytes when asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError
from torch import Tensor

from app.api.errors import validation_message
from app.api.v2_schemas import (
    InferenceRequest,
    MCParameters,
    RequestInput,
    ResponseOutput,
    TensorMetadata,
)
from app.dataplane.policy import PredictOptions
from app.engine.predictor import Prediction
from app.errors import InvalidTensorError
from app.inputs.base import INPUT_NAME, Rows, WireTensor
from app.registry.served import ServedModel
from app.tasks import OutputTensor

SAMPLES_OUTPUT = "samples"
"""Every MC pass's output, (B, N, ...); returned only when asked for by name."""


_NUMPY_OUT: dict[str, type[np.generic]] = {
    "INT64": np.int64,
    "BOOL": np.bool_,
    "FP32": np.float32,
    "UINT8": np.uint8,
}


@dataclass(frozen=True)
class RequestedOutput:
    """An output to return and whether as raw bytes (binary tensor data extension)."""

    name: str
    binary: bool


@dataclass(frozen=True)
class DecodedRequest:
    """What the data plane needs from an inference request, and how to answer it."""

    id: str | None
    rows: Rows
    """Rows for the model's input kind (``input_kind.v2_rows``)."""
    options: PredictOptions
    outputs: list[RequestedOutput]


def input_metadata(model: ServedModel) -> list[TensorMetadata]:
    """The input tensors the model's input kind takes (the first named ``input``)."""
    return [
        TensorMetadata(
            name=tensor.name,
            datatype=tensor.datatype,
            shape=tensor.shape,
            parameters=tensor.parameters,
        )
        for tensor in model.input_kind.v2_inputs()
    ]


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
    names = [tensor.name for tensor in request.inputs]
    if (
        set(names) - model.input_kind.v2_names()
        or INPUT_NAME not in names
        or len(set(names)) != len(names)
    ):
        raise InvalidTensorError(f"model '{model.name}' takes {_input_names(model)}, got {names}")
    array = model.input_kind.v2_rows(wire_tensors(request.inputs, binary))
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


SHIFT_OUTPUTS = (OutputTensor("shift_score", "FP32", []), OutputTensor("shift_flag", "BOOL", []))
"""Outputs of a model with a shift detector (the card's ``shift`` section), whatever its task."""


ABSTAIN_OUTPUT = OutputTensor("abstain", "BOOL", [])
"""Per row, of a model with an abstention section (any task that abstains): the v1 ``abstain``."""


def _statistics(model: ServedModel) -> list[OutputTensor]:
    dims = model.task.value_dims(model.output_shape)
    outputs = model.task.outputs(dims, model.card.conformal is not None)
    if model.card.abstention is not None:
        outputs = [*outputs, ABSTAIN_OUTPUT]
    return outputs + list(SHIFT_OUTPUTS) if model.card.shift is not None else outputs


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


def wire_tensors(inputs: Sequence[RequestInput], binary: bytes) -> dict[str, WireTensor]:
    """The request's input tensors by name, each with its share of the binary tail (in the
    order sent, ``binary_data_size`` bytes each)."""
    tensors: dict[str, WireTensor] = {}
    offset = 0
    for tensor in inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        tail = binary[offset:] if size is not None else b""
        tensors[tensor.name] = WireTensor(
            tensor.name, tensor.datatype, tensor.shape, tensor.data, size, tail
        )
        if isinstance(size, int) and size > 0:
            offset += size
    return tensors


def _input_names(model: ServedModel) -> str:
    required, *optional = [tensor.name for tensor in model.input_kind.v2_inputs()]
    if not optional:
        return f"exactly one input named '{required}'"
    return f"an input named '{required}' and optionally {', '.join(map(repr, optional))}"


def _output_tensor(model: ServedModel, prediction: Prediction, name: str) -> Tensor:
    if name == SAMPLES_OUTPUT:
        assert prediction.samples is not None
        return prediction.samples.transpose(0, 1)
    if name == ABSTAIN_OUTPUT.name:
        assert prediction.abstain is not None
        return prediction.abstain
    if prediction.shift is not None and name in ("shift_score", "shift_flag"):
        return prediction.shift.score if name == "shift_score" else prediction.shift.flag
    return model.task.output_tensor(prediction, name)
