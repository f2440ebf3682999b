"""One micro-batcher per model.

Each request gets a future and waits in a bounded queue. A loop on the event loop takes the
first waiting request, takes every other queued one while the fused run stays under
``max_batch_rows`` folded rows (input rows x first-round samples), and runs the batch on the
shared inference thread. It waits (up to ``max_wait``) for more only while requests for this
model are known to be on their way (``expecting``: admitted by the data plane, still being
validated): a lone request never waits, concurrent ones are fused. When a run raises, every
request of that run gets the error; the other runs are unaffected. Requests whose deadline
passed before their run started are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

from app.engine.predictor import Prediction, PredictionRequest
from app.errors import DeadlineExceededError, OverloadedError, ShuttingDownError

RunBatch = Callable[[Sequence[PredictionRequest]], list[Prediction]]
OnBatch = Callable[[int, list[float]], None]
"""Called with the fused batch's folded rows and each request's queue wait in seconds."""


@dataclass
class _Pending:
    request: PredictionRequest
    future: asyncio.Future[Prediction]
    enqueued: float = field(default_factory=time.monotonic)
    abandoned: bool = False


Ticket = _Pending
"""A queued request's handle, from ``enqueue``, for ``result``."""


class ModelBatcher:
    """Fuses concurrent requests for one model into sampling runs on an inference thread."""

    def __init__(
        self,
        name: str,
        run_batch: RunBatch,
        executor: Executor,
        *,
        max_batch_rows: int,
        max_wait_s: float,
        max_queue: int,
        on_batch: OnBatch | None = None,
    ) -> None:
        self.name = name
        self._run_batch = run_batch
        self._executor = executor
        self.max_batch_rows = max_batch_rows
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._held: _Pending | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._running = False
        self._expected = 0

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Mark a request as on its way to ``submit`` (the batcher may wait for it)."""
        self._expected += 1
        try:
            yield
        finally:
            self._expected -= 1

    @property
    def waiting(self) -> int:
        """Requests queued and not yet running."""
        return self._queue.qsize() + (1 if self._held is not None else 0)

    async def submit(
        self, request: PredictionRequest, timeout_s: float | None = None
    ) -> Prediction:
        """Queue ``request`` and wait for its prediction (``enqueue`` then ``result``)."""
        return await self.result(self.enqueue(request), timeout_s)

    def enqueue(self, request: PredictionRequest) -> Ticket:
        """Queue ``request`` now; raises OverloadedError when ``max_queue`` requests already
        wait, ShuttingDownError once ``stop`` was called."""
        if self._stopping:
            raise ShuttingDownError()
        if self.waiting >= self.max_queue:
            raise OverloadedError(self.name, self.max_queue)
        self._ensure_running()
        pending = _Pending(request, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(pending)
        return pending

    async def result(self, ticket: Ticket, timeout_s: float | None = None) -> Prediction:
        """Wait for a queued request's prediction; DeadlineExceededError after ``timeout_s``
        (the request is then dropped if its run has not started)."""
        try:
            return await asyncio.wait_for(asyncio.shield(ticket.future), timeout_s)
        except TimeoutError:
            ticket.abandoned = True
            raise DeadlineExceededError(timeout_s or 0.0) from None
        except asyncio.CancelledError:
            ticket.abandoned = True
            raise

    async def stop(self) -> None:
        """Refuse new work, let the queued requests run, then stop the loop."""
        self._stopping = True
        if self._task is None:
            return
        while self.waiting or self._running:
            await asyncio.sleep(0.005)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name=f"mcdrop-batcher-{self.name}"
            )

    async def _loop(self) -> None:
        while True:
            batch = await self._gather()
            await self._run(batch)

    async def _gather(self) -> list[_Pending]:
        first = self._held if self._held is not None else await self._queue.get()
        self._held = None
        batch, rows = [first], first.request.folded_rows
        deadline = time.monotonic() + self.max_wait_s
        while rows < self.max_batch_rows:
            nxt = await self._next_before(deadline)
            if nxt is None:
                break
            if rows + nxt.request.folded_rows > self.max_batch_rows:
                self._held = nxt
                break
            batch.append(nxt)
            rows += nxt.request.folded_rows
        return batch

    async def _next_before(self, deadline: float) -> _Pending | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._expected == 0:
                return None
        try:
            return await asyncio.wait_for(self._queue.get(), remaining)
        except TimeoutError:
            return None

    async def _run(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.abandoned and not p.future.done()]
        if not live:
            return
        started = time.monotonic()
        if self._on_batch is not None:
            rows = sum(p.request.folded_rows for p in live)
            self._on_batch(rows, [started - p.enqueued for p in live])
        loop = asyncio.get_running_loop()
        requests = [p.request for p in live]
        self._running = True
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, requests)
        except Exception as exc:
            for pending in live:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        finally:
            self._running = False
        for pending, result in zip(live, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)
