"""The v1 predict body in either form: JSON (:class:`PredictRequest`, images and audio as
``{"b64": ...}`` rows) or ``multipart/form-data`` with one or more ``image`` or ``audio`` file
fields and the MC options as form fields (``curl -F image=@digit.png -F n_samples=50``). Both
become one PredictRequest; the model's input kind decodes the files."""

from __future__ import annotations

import importlib.util
import json
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from app.api.schemas import PredictRequest
from app.errors import InvalidInputError
from app.inputs.audio import AUDIO_FIELD
from app.inputs.image import IMAGE_FIELD

_OPTION_FIELDS = set(PredictRequest.model_fields) - {"inputs"}
FILE_FIELDS = (IMAGE_FIELD, AUDIO_FIELD)
"""Form fields whose files are input rows, in the order sent (the input kind decodes them)."""


async def predict_body(request: Request) -> PredictRequest:
    """The request's body as a PredictRequest; schema errors as FastAPI's own (422)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _form_body(request)
    try:
        return PredictRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(_in_body(exc)) from None


PredictBody = Annotated[PredictRequest, Depends(predict_body)]


async def _form_body(request: Request) -> PredictRequest:
    if importlib.util.find_spec("python_multipart") is None:
        raise InvalidInputError(
            "body", 'multipart/form-data needs python-multipart: pip install "mcdrop[vision]"'
        )
    limit = request.app.state.mcdrop.settings.max_rows_per_request
    _check_complete(await request.body(), request.headers.get("content-type", ""))
    images: list[bytes] = []
    fields: dict[str, Any] = {}
    async with request.form(max_files=limit + 1, max_fields=len(_OPTION_FIELDS) + 1) as form:
        for key, value in form.multi_items():
            if key in FILE_FIELDS and isinstance(value, UploadFile):
                images.append(await value.read())
            elif key in _OPTION_FIELDS and isinstance(value, str) and key not in fields:
                fields[key] = _form_value(value)
            else:
                raise InvalidInputError(
                    key,
                    f"unexpected form field; send '{IMAGE_FIELD}' or '{AUDIO_FIELD}' files and "
                    "the options "
                    f"{', '.join(sorted(_OPTION_FIELDS))} (each once)",
                )
    if not images:
        raise InvalidInputError(
            "body", "a multipart request needs at least one image or audio file"
        )
    try:
        return PredictRequest.model_validate({"inputs": images, **fields})
    except ValidationError as exc:
        raise RequestValidationError(_in_body(exc)) from None


def _check_complete(body: bytes, content_type: str) -> None:
    """A multipart body must end with its closing boundary (``--BOUNDARY--``): one that stops
    before it was cut off in transit, and its last part may be incomplete."""
    boundary = next(
        (
            part.split("=", 1)[1].strip().strip('"')
            for part in content_type.split(";")[1:]
            if part.strip().lower().startswith("boundary=")
        ),
        None,
    )
    if not boundary:
        raise InvalidInputError("body", "a multipart/form-data body needs a boundary parameter")
    if not body.rstrip(b"\r\n").endswith(b"--" + boundary.encode("latin-1") + b"--"):
        raise InvalidInputError(
            "body", "the multipart body is truncated: it ends before its closing boundary"
        )


def _form_value(text: str) -> Any:
    """A form field's value as the JSON body would carry it (``30`` a number, ``true`` a
    boolean), else the text itself (``auto``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _in_body(exc: ValidationError) -> list[Any]:
    """Pydantic's errors located in the body, as FastAPI reports them."""
    return [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]


PREDICT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PredictRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        IMAGE_FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "PNG, JPEG or WebP files, one row each.",
                        },
                        AUDIO_FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "WAV, FLAC or OGG files, one row each.",
                        },
                        "n_samples": {"type": "string"},
                        "seed": {"type": "integer", "minimum": 0},
                        "ci_level": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                        "return_samples": {"type": "boolean"},
                        "maps": {"type": "string", "enum": ["json", "png", "npy", "none"]},
                    },
                }
            },
        },
    }
}
"""The route's documented body (the dependency reads it, so FastAPI cannot infer it)."""
