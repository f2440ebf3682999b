"""Request ids, the body-size limit, body deadlines and the request log, as one pure ASGI
middleware."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("mcdrop.requests")
REQUEST_ID_HEADER = "x-request-id"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_BODY_TYPES = {b"application/json", b"application/octet-stream"}
DISCARD_BYTES = 64 * 1024 * 1024
"""Most bytes of a refused body read and thrown away so that the client, still sending, gets
the 413 (a server that closes on a sender makes its kernel reset the connection)."""


class _BodyTimeout(HTTPException):
    """The body stalled or ran past its deadline: 408, and the connection is closed."""


_FORM_PATH = re.compile(r"^/v1/models/[^/]+/predict$")
"""The one route that also takes multipart/form-data (image files)."""


class RequestContextMiddleware:
    """Gives every request an id (the client's ``X-Request-ID`` if sane, else a new one),
    returns it in the response header, refuses bodies over ``max_body_bytes`` with 413 before
    reading them whole, and writes one log line per request (never its headers or body)."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        body_timeout_s: float = 10.0,
        request_timeout_s: float = 30.0,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.request_timeout_s = request_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = {"code": 500}
        body = _BodyReader(self, receive, time.monotonic() + self.request_timeout_s)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                if body.refused and (b"connection", b"close") not in headers:
                    headers.append((b"connection", b"close"))  # the body was not all read
                message = {**message, "headers": headers}
            await send(message)

        try:
            if _declared_length(scope) > self.max_body_bytes:
                if _header(scope, b"expect") != b"100-continue":
                    await body.discard()
                await self._reply(send_with_id, request_id, 413, self._limit_message())
            elif not _json_or_empty(scope):
                message = "content-type: must be application/json"
                await self._reply(send_with_id, request_id, 415, message)
            else:
                await self.app(scope, body.receive, send_with_id)
        finally:
            logger.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status["code"],
                    "duration_ms": round((time.perf_counter() - started) * 1e3, 3),
                },
            )

    def _limit_message(self) -> str:
        return f"body: larger than the limit of {self.max_body_bytes} bytes (max_body_bytes)"

    @staticmethod
    async def _reply(send: Send, request_id: str, status: int, message: str) -> None:
        """Answer without reading the body (the connection is closed after it)."""
        body = json.dumps({"error": message, "request_id": request_id}).encode()
        headers: list[Any] = [(b"content-type", b"application/json"), (b"connection", b"close")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _BodyReader:
    """The app's ``receive`` while the body arrives: each piece within ``body_timeout_s`` and
    the whole body by ``deadline`` (else 408), at most ``max_body_bytes`` (else 413, the rest
    read and thrown away up to ``DISCARD_BYTES`` so the client sees the answer)."""

    def __init__(self, limits: RequestContextMiddleware, receive: Receive, deadline: float):
        self.limits = limits
        self._receive = receive
        self.deadline = deadline
        self.seen = 0
        self.complete = False
        self.refused = False

    async def receive(self) -> Message:
        """The next message; body pieces are timed and counted until the body is complete."""
        if self.complete:
            return await self._receive()
        message = await self._next_piece()
        if self.seen > self.limits.max_body_bytes:
            await self.discard()
            raise HTTPException(413, self.limits._limit_message())
        return message

    async def discard(self) -> None:
        """Read what is left of the body (bounded in bytes and time), keeping none of it."""
        self.refused = True
        budget = self.seen + DISCARD_BYTES
        try:
            while not self.complete and self.seen <= budget:
                await self._next_piece()
        except _BodyTimeout:
            pass  # a client that stalls gets the answer without the rest being waited for

    async def _next_piece(self) -> Message:
        timeout = min(self.limits.body_timeout_s, self.deadline - time.monotonic())
        try:
            message = await asyncio.wait_for(self._receive(), timeout=max(timeout, 0.0))
        except TimeoutError:  # not the builtin TimeoutError before Python 3.11
            self.refused = True
            raise _BodyTimeout(408, self._timeout_message()) from None
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            self.complete = not message.get("more_body", False)
        else:  # http.disconnect
            self.complete = True
        return message

    def _timeout_message(self) -> str:
        return (
            f"body: not received in time (a piece within {self.limits.body_timeout_s:g} s, "
            f"body_timeout_s; all of it within {self.limits.request_timeout_s:g} s, "
            "request_timeout_s)"
        )


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            candidate: str = value.decode("latin-1")
            if _CLIENT_ID.match(candidate):
                return candidate
    return os.urandom(16).hex()  # 128 random bits, as a uuid4 (whose constructor costs 5x)


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name == wanted:
            found: bytes = value
            return found
    return None


def _json_or_empty(scope: Scope) -> bool:
    """A body that declares a content type must declare JSON (or, for the v2 binary tensor
    extension, octet-stream); forms, text and the like are refused before they are read."""
    has_body = _declared_length(scope) > 0 or _header(scope, b"transfer-encoding") is not None
    declared = _header(scope, b"content-type")
    if scope.get("method") not in ("POST", "PUT", "PATCH") or not has_body or declared is None:
        return True
    content_type = declared.split(b";")[0].strip().lower()
    if content_type == b"multipart/form-data" and _FORM_PATH.match(scope.get("path", "")):
        return True
    return content_type in _BODY_TYPES or content_type.endswith(b"+json")


def _declared_length(scope: Scope) -> int:
    value = _header(scope, b"content-length")
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0
