"""uvicorn as mcdrop runs it: one config builder for ``mcdrop serve`` and the tests, and an HTTP
protocol that closes connections whose request head does not arrive in time.

uvicorn bounds the idle time between requests (``timeout_keep_alive``) but not a request head
that trickles in, byte by byte; the body's deadlines are the request middleware's
(``body_timeout_s``, ``request_timeout_s``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings

logger = logging.getLogger(__name__)


class McdropConfig(uvicorn.Config):
    """uvicorn's config plus ``header_timeout_s`` (picklable, so worker processes get it)."""

    def __init__(self, app: Any, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, http=HeadDeadlineProtocol, **kwargs)
        self.header_timeout_s = header_timeout_s


class HeadDeadlineProtocol(HttpToolsProtocol):
    """Closes a connection whose request line and headers are not complete ``header_timeout_s``
    after it opened or after its previous answer; a request being served is never cut."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout_s: float = getattr(config, "header_timeout_s", 10.0)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_overdue)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # its head arrived in time: the request is being served
        if not self.transport.is_closing():
            logger.info("closing a connection: no request head in %gs", self.header_timeout_s)
            self.transport.close()


def server_config(app: Any, settings: Settings, **kwargs: Any) -> McdropConfig:
    """The uvicorn config of ``settings`` for ``app`` (an app, or an import string with
    ``factory=True``); ``kwargs`` go to uvicorn (``workers``, ``log_level``, ...)."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": None,
        "access_log": False,
        # Past every request's deadline: in-flight requests are answered (504 at worst) first.
        "timeout_graceful_shutdown": math.ceil(settings.request_timeout_s) + 2,
    }
    options.update(kwargs)
    return McdropConfig(app, header_timeout_s=settings.header_timeout_s, **options)


def run_workers(config: McdropConfig) -> None:
    """Several worker processes on one socket, as ``uvicorn.run(..., workers=N)`` does."""
    from uvicorn.supervisors import Multiprocess

    socket = config.bind_socket()
    Multiprocess(config, sockets=[socket]).run()
