"""Request and response bodies of the Open Inference Protocol v2 (REST), as KServe and Triton
define them. mcdrop's Monte Carlo options travel in the request's ``parameters``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from app.api.mc_options import MCOptions


class ServerMetadata(BaseModel):
    """``GET /v2``: who is serving and which protocol extensions it speaks."""

    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    """Name, datatype and shape of one input or output; -1 marks a variable dimension."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    """What the protocol cannot say in a datatype (an image input's encoding); omitted if None."""

    @model_serializer(mode="wrap")
    def _omit_empty_parameters(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("parameters") is None:
            data.pop("parameters", None)
        return data


class ModelMetadata(BaseModel):
    """``GET /v2/models/{name}``: what the model takes and returns."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = Field(default_factory=dict)


class ModelReady(BaseModel):
    """``GET /v2/models/{name}/versions/{v}/ready`` when the model is ready."""

    name: str
    ready: bool


class RequestInput(BaseModel):
    """One input tensor; ``data`` is flat or nested, row-major, or sent as binary data."""

    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class RequestOutput(BaseModel):
    """One output the client asks for (``binary_data`` in parameters asks for raw bytes)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """``POST /v2/models/{name}/infer``."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class MCParameters(MCOptions):
    """The Monte Carlo options read from the request's ``parameters``; others are ignored."""

    model_config = ConfigDict(extra="ignore")

    binary_data_output: bool = False


class ResponseOutput(BaseModel):
    """One output tensor; ``data`` is flat row-major, absent when sent as binary data."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[bool] | list[float] | list[int] | None = None


class InferenceResponse(BaseModel):
    """The answer: one tensor per statistic, the request's ``id`` echoed, N and seed used."""

    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any]
    outputs: list[ResponseOutput]
