"""The one error envelope: ``{"error": "...", "request_id": "..."}`` with the error's status.

Unexpected exceptions are logged with the request id and answered as a generic 500: no stack
trace or internal detail ever reaches a client.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import McdropError, OverloadedError, UnauthorizedError

logger = logging.getLogger(__name__)


def request_id_of(request: Request) -> str | None:
    """The id the request middleware gave this request."""
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value is not None else None


def error_response(
    request: Request, status_code: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The envelope every error answer uses."""
    content: dict[str, str] = {"error": message}
    request_id = request_id_of(request)
    if request_id is not None:
        content["request_id"] = request_id
    return JSONResponse(status_code=status_code, content=content, headers=headers)


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


def _headers_for(exc: McdropError) -> dict[str, str] | None:
    if isinstance(exc, OverloadedError):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, UnauthorizedError):
        return {"WWW-Authenticate": 'Bearer realm="mcdrop"'}
    return None


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors, validation errors, HTTP errors and the unexpected to the envelope."""

    @app.exception_handler(McdropError)
    async def _domain(request: Request, exc: McdropError) -> JSONResponse:
        return error_response(request, exc.status_code, exc.message, _headers_for(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        route = request.scope.get("route")
        name = request.path_params.get("name")
        if route is not None and name is not None:
            request.app.state.mcdrop.dataplane.count_refused(name, route.name)
        # Routers may set their own status for schema errors (the v2 protocol says 400).
        status = getattr(route, "validation_status_code", 422)
        return error_response(request, status, validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(request, exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error(
            "unhandled error on %s %s",
            request.method,
            request.url.path,
            exc_info=exc,
            extra={"request_id": request_id_of(request)},
        )
        return error_response(request, 500, "internal server error")
