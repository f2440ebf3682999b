"""Open Inference Protocol v2 (REST): server and model metadata, model readiness, inference.

Health routes (``/v2/health/*``, ``/v2/models/{name}/ready``) live in :mod:`app.api.health`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from app import __version__
from app.api.deps import DataPlaneDep, RepositoryDep
from app.api.encoding import answer_values, serialise
from app.api.v2_schemas import (
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ServerMetadata,
)
from app.api.v2_tensors import (
    decode_request,
    encode_outputs,
    input_metadata,
    output_metadata,
    split_body,
)
from app.dataplane import DataPlane
from app.engine.selection import describe_choice
from app.errors import InvalidInputError, InvalidTensorError, McdropError
from app.registry.served import ServedModel

ENDPOINT = "v2_infer"
EXTENSIONS = ["binary_tensor_data", "parameters"]
HEADER_LENGTH = "Inference-Header-Content-Length"


class OipRoute(APIRoute):
    """A v2 route: the protocol answers a malformed request with 400, not FastAPI's 422."""

    validation_status_code = 400


router = APIRouter(prefix="/v2", tags=["v2"], route_class=OipRoute)


@router.get("")
async def server_metadata() -> ServerMetadata:
    """Server name, version and the protocol extensions it supports."""
    return ServerMetadata(name="mcdrop", version=__version__, extensions=EXTENSIONS)


@router.get("/models/{name}")
async def model_metadata(name: str, repository: RepositoryDep) -> ModelMetadata:
    """Inputs and outputs of a model (-1 marks the batch dimension)."""
    return _metadata(repository.get(name))


@router.get("/models/{name}/versions/{version}")
async def model_version_metadata(
    name: str, version: str, repository: RepositoryDep
) -> ModelMetadata:
    """Inputs and outputs of one version of a model."""
    return _metadata(repository.get(name, version))


@router.get("/models/{name}/versions/{version}/ready")
async def model_version_ready(name: str, version: str, repository: RepositoryDep) -> ModelReady:
    """200 when that version is loaded; 404 for another version, 503 if it failed to load."""
    model = repository.get(name, version)
    return ModelReady(name=model.name, ready=True)


_INFER_DOC: dict[int | str, dict[str, Any]] = {
    200: {"model": InferenceResponse},
    400: {"description": "bad tensor: name, datatype, shape or data"},
}


@router.post("/models/{name}/infer", name=ENDPOINT, response_model=None, responses=_INFER_DOC)
async def infer(name: str, request: Request, dataplane: DataPlaneDep) -> Response:
    """One output tensor per uncertainty statistic; MC options in ``parameters``."""
    return await _infer(name, None, request, dataplane)


@router.post(
    "/models/{name}/versions/{version}/infer",
    name="v2_infer_version",
    response_model=None,
    responses=_INFER_DOC,
)
async def infer_version(
    name: str, version: str, request: Request, dataplane: DataPlaneDep
) -> Response:
    """Inference on one version of a model."""
    return await _infer(name, version, request, dataplane)


async def _infer(
    name: str, version: str | None, request: Request, dataplane: DataPlane
) -> Response:
    body = await request.body()
    try:
        model = dataplane.repository.get(name, version)
        decoded = decode_request(*split_body(body, request.headers.get(HEADER_LENGTH)), model)
    except McdropError as exc:
        dataplane.count_refused(name, ENDPOINT, exc)
        raise
    try:
        model, prediction = await dataplane.predict(
            name, decoded.rows, decoded.options, endpoint=ENDPOINT, version=version
        )
    except InvalidInputError as exc:
        raise InvalidTensorError(exc.message) from exc

    def encode() -> tuple[bytes, bytes]:
        outputs, binary = encode_outputs(model, prediction, decoded.outputs)
        answer = InferenceResponse(
            model_name=model.name,
            model_version=model.version,
            id=decoded.id,
            parameters={
                "n_samples": prediction.n_samples,
                "seed": prediction.seed,
                "ci_level": prediction.ci_level,
                **(
                    {"conformal_level": prediction.conformal.level}
                    if prediction.conformal is not None
                    else {}
                ),
            },
            outputs=outputs,
        )
        return answer.model_dump_json(exclude_none=True).encode(), binary

    header, binary = await serialise(encode, answer_values(prediction))
    if not binary:
        return Response(header, media_type=JSONResponse.media_type)
    return Response(
        header + binary,
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


def _metadata(model: ServedModel) -> ModelMetadata:
    card = model.card
    return ModelMetadata(
        name=model.name,
        versions=[model.version],
        platform="mcdrop_pytorch",
        inputs=input_metadata(model),
        outputs=output_metadata(model),
        parameters={
            "task": card.task,
            "labels": card.labels,
            "default_n_samples": card.n_samples.default,
            "max_n_samples": card.n_samples.max,
            **_input_parameters(model),
            "mc_dropout": describe_choice(card.mc_dropout),
            "sampled_dropout": [layer.name for layer in model.dropout_layers],
        },
    )


def _input_parameters(model: ServedModel) -> dict[str, object]:
    """What the input kind says beyond its tensors (text pairs, an image's preprocessing, an
    integer range or a variable axis); nothing for a plain float tensor."""
    return dict(model.input_kind.describe().extra)
