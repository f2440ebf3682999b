"""One admitted job's work on the server's threads, within the job's deadline.

Sampling runs on the inference thread, request building (decoding, tokenizing) on the decode
threads; both through :class:`Step`, so that a deadline, a client gone away or a shutdown stop
every kind of work the same way: a call not yet started never starts, and work in progress stops
at its next checkpoint (:mod:`app.engine.progress`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from app.dataplane.worker import InferenceThread
from app.engine.progress import stopping_when
from app.errors import DeadlineExceededError, ShuttingDownError

T = TypeVar("T")


class Workers:
    """The server's threads and whether their work was abandoned (by ``DataPlane.close``)."""

    def __init__(
        self, inference: InferenceThread, decode: Executor, request_timeout_s: float
    ) -> None:
        self.inference = inference
        self.decode = decode
        self.request_timeout_s = request_timeout_s
        self.abandoned = False
        self.waiting: set[asyncio.Future[Any]] = set()

    def abandon(self) -> None:
        """No step starts any more; queued calls are cancelled, their waiters answered."""
        self.abandoned = True
        self.inference.shutdown(wait=False, cancel_futures=True)
        self.decode.shutdown(wait=False, cancel_futures=True)
        for waiting in list(self.waiting):
            waiting.cancel()


class Step:
    """Runs one function of an admitted job on the server's threads, within its deadline."""

    def __init__(self, workers: Workers, deadline: float) -> None:
        self._workers = workers
        self.deadline = deadline

    @asynccontextmanager
    async def exclusive(self, lock: asyncio.Semaphore) -> AsyncIterator[None]:
        """Hold ``lock`` for the rest of the job; waiting for it counts against the deadline."""
        try:
            await asyncio.wait_for(lock.acquire(), max(0.0, self.deadline - time.monotonic()))
        except TimeoutError:
            raise DeadlineExceededError(self._workers.request_timeout_s) from None
        try:
            yield
        finally:
            lock.release()

    async def prepare(self, fn: Callable[..., T], *args: Any, inline: bool = False) -> T:
        """``fn(*args)`` on the decode threads (the policy's request building: decoding images,
        tokenizing texts) within the job's deadline. The work stops at its next checkpoint
        (between images or texts) once the deadline passes, the caller goes away or the plane
        abandons its work, so no request decodes past its deadline. ``inline``: the work is
        known to be small (a few numbers to check), so it runs here, on the event loop."""
        workers, timeout = self._workers, self._workers.request_timeout_s
        if inline:
            self._remaining()
            return fn(*args)
        gone = threading.Event()

        def stop_test() -> None:
            if workers.abandoned:
                raise ShuttingDownError()
            if gone.is_set() or time.monotonic() > self.deadline:
                raise DeadlineExceededError(timeout)

        def run() -> T:
            with stopping_when(stop_test):
                stop_test()
                return fn(*args)

        try:
            return await self._run_on(workers.decode, run)
        finally:
            gone.set()

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the inference thread; DeadlineExceededError once the job's deadline
        passes (a call not yet started never starts), ShuttingDownError once the plane
        abandoned its work."""
        return await self._run_on(self._workers.inference, fn, *args)

    def _remaining(self) -> float:
        """Seconds left before the deadline; ShuttingDownError once the plane abandoned its
        work, DeadlineExceededError once none are left: no step starts then."""
        if self._workers.abandoned:
            raise ShuttingDownError()
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceededError(self._workers.request_timeout_s)
        return remaining

    async def _run_on(self, executor: Executor, fn: Callable[..., T], *args: Any) -> T:
        workers = self._workers
        remaining = self._remaining()
        timeout = workers.request_timeout_s
        future = asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        workers.waiting.add(future)
        try:
            return await asyncio.wait_for(future, remaining)
        except TimeoutError:
            raise DeadlineExceededError(timeout) from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if workers.abandoned and task is not None and not task.cancelling():
                raise ShuttingDownError() from None
            raise
        finally:
            workers.waiting.discard(future)
