"""The inference process of ``mcdrop serve``: started before the HTTP workers, stopped after
them.

:class:`InferenceProcess` spawns it and waits until its models are loaded and its socket
listens; the HTTP workers then connect (``Settings.inference_socket``). It ignores SIGINT and
SIGTERM, which are the HTTP side's to drain: it exits when ``mcdrop serve`` closes its pipe
(after the workers drained and exited), or when ``mcdrop serve`` itself dies (the pipe closes).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from app.config import Settings, inference_threads
from app.engine.device import resolve_device, resolve_dtype
from app.registry.served import LoadOptions

logger = logging.getLogger(__name__)

STOP_JOIN_S = 0.5
"""How long stopping waits for the process to exit before killing it. It stops after the HTTP
workers drained, so nothing waits for its work: it exits at once, and this takes the place of
the in-process inference thread's join in the SIGTERM bound."""


def load_options(settings: Settings) -> LoadOptions:
    """The engine options of ``settings`` for every model loaded."""
    return LoadOptions(
        max_sample_rows=settings.max_sample_rows,
        device=resolve_device(settings.device),
        dtype=resolve_dtype(settings.dtype),
        max_image_pixels=settings.max_image_pixels,
    )


class InferenceProcess:
    """Spawns and stops the inference process of one ``mcdrop serve``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._folder = Path(tempfile.mkdtemp(prefix="mcdrop-inference-"))
        self.socket = self._folder / "inference.sock"
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process: Any = context.Process(
            target=inference_main,
            args=(settings, str(self.socket), child),
            name="mcdrop-inference",
        )
        self._child = child

    def start(self) -> bool:
        """Start it and wait until its socket listens (True) or it exited first (False); the
        models then load while the HTTP workers start (their catalogue waits for them)."""
        self._process.start()
        self._child.close()
        while self._process.is_alive():
            if self._pipe.poll(0.2):
                try:
                    return bool(self._pipe.recv())
                except EOFError:
                    break
        self.stop()
        return False

    def stop(self) -> None:
        """Ask it to stop (close the pipe), wait a bounded time, then kill it."""
        self._pipe.close()
        if self._process.pid is not None:
            self._process.join(STOP_JOIN_S)
            if self._process.is_alive():
                logger.warning("the inference process did not stop in time: killing it")
                self._process.kill()
                self._process.join(1.0)
        shutil.rmtree(self._folder, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        return int(self._process.pid) if self._process.pid is not None else None


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (uvicorn's too: the HTTP workers run on it),
    else asyncio's: each message costs a few callbacks on it."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def inference_main(settings: Settings, socket: str, pipe: Connection) -> None:
    """The process's body: load the models, serve the socket until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from app.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(settings, socket, pipe))


async def _serve(settings: Settings, socket: str, pipe: Connection) -> None:
    import torch

    from app.dataplane.inference import InferenceService
    from app.engine.allocator import retain_freed_memory
    from app.heap import freeze_startup_heap
    from app.registry.described import serve_from
    from app.registry.repository import ModelRepository

    torch.set_num_threads(inference_threads(settings, max(1, settings.workers)))
    retain_freed_memory(settings.allocator_retain_mib * 2**20)
    repository = ModelRepository(settings.models_dir, load_options(settings))
    serve_from(repository.get)
    service = InferenceService(repository, settings)
    stopped = asyncio.Event()
    asyncio.get_running_loop().add_reader(pipe.fileno(), stopped.set)
    # Listen first: the HTTP workers start (and import) while the models load; their catalogue
    # requests are answered once loading is done.
    async with await asyncio.start_unix_server(service.serve_connection, path=socket):
        pipe.send(True)
        await asyncio.to_thread(repository.load_all)
        service.loaded.set()
        freeze_startup_heap()
        ready = len(repository.ready_models())
        logger.info("inference process %d ready: %d model(s)", os.getpid(), ready)
        await stopped.wait()
    logger.info("inference process stopped")
    logging.shutdown()
    # Nothing is left to answer (the workers are gone): no interpreter teardown, no thread joins.
    os._exit(0)
