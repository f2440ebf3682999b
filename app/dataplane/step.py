"""A step of an admitted job: one function on the inference thread, within the job's deadline.

The data plane hands each admitted job a ``Step``; evaluation and rank jobs call it once per
short piece of work, so a job past its deadline, or abandoned by a closing plane, stops at its
next step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from app.dataplane.worker import InferenceThread
from app.errors import DeadlineExceededError, ShuttingDownError

if TYPE_CHECKING:
    from app.dataplane.plane import DataPlane

T = TypeVar("T")


class Step:
    """Runs one function of an admitted job on the inference thread, within its deadline."""

    def __init__(self, executor: InferenceThread, deadline: float, plane: DataPlane) -> None:
        self._executor = executor
        self.deadline = deadline
        self._plane = plane

    @asynccontextmanager
    async def exclusive(self, lock: asyncio.Semaphore) -> AsyncIterator[None]:
        """Hold ``lock`` for the rest of the job; waiting for it counts against the deadline."""
        try:
            await asyncio.wait_for(lock.acquire(), max(0.0, self.deadline - time.monotonic()))
        except TimeoutError:
            raise DeadlineExceededError(self._plane.settings.request_timeout_s) from None
        try:
            yield
        finally:
            lock.release()

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the inference thread; DeadlineExceededError once the job's deadline
        passes (a call not yet started never starts), ShuttingDownError once the plane
        abandoned its work."""
        if self._plane.abandoned:
            raise ShuttingDownError()
        remaining = self.deadline - time.monotonic()
        timeout = self._plane.settings.request_timeout_s
        if remaining <= 0:
            raise DeadlineExceededError(timeout)
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        self._plane._steps.add(future)
        try:
            return await asyncio.wait_for(future, remaining)
        except TimeoutError:
            raise DeadlineExceededError(timeout) from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._plane.abandoned and task is not None and not task.cancelling():
                raise ShuttingDownError() from None
            raise
        finally:
            self._plane._steps.discard(future)
