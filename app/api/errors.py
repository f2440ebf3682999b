"""The one error envelope: ``{"error": "..."}`` with the status the error carries."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import McdropError

logger = logging.getLogger(__name__)


def error_response(status_code: int, message: str) -> JSONResponse:
    """The envelope every error answer uses."""
    return JSONResponse(status_code=status_code, content={"error": message})


def validation_message(exc: RequestValidationError | ValidationError, root: str = "") -> str:
    """``field: problem`` for each validation error, the field as a dotted path in the body
    (below ``root`` when the validated object sits inside the body)."""
    parts = []
    for err in exc.errors():
        loc = [root] if root else []
        loc += [str(p) for p in err.get("loc", ()) if p != "body"]
        field = ".".join(loc) if loc else "body"
        parts.append(f"{field}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors, validation errors, HTTP errors and the unexpected to the envelope."""

    @app.exception_handler(McdropError)
    async def _domain(request: Request, exc: McdropError) -> JSONResponse:
        return error_response(exc.status_code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        route = request.scope.get("route")
        name = request.path_params.get("name")
        if route is not None and name is not None:
            request.app.state.mcdrop.dataplane.count_rejected(name, route.name)
        # Routers may set their own status for schema errors (the v2 protocol says 400).
        status = getattr(route, "validation_status_code", 422)
        return error_response(status, validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error")
