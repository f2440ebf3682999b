"""One micro-batcher per model.

Each request gets a future and waits in a bounded queue. A loop on the event loop takes the
oldest waiting request, takes every other queued one while the fused run stays under
``max_batch_rows`` folded rows (input rows x first-round samples), and runs the batch on the
shared inference thread. Before a run it waits for more requests until the oldest one has waited
``max_wait`` (Triton's ``max_queue_delay``): a request that arrives during that window joins the
run, and requests queued while the thread was busy have waited long enough already, so under load
the wait costs nothing.

Isolation: the run answers each request on its own (a prediction, or that request's error). When
the fused run itself raises, the batcher cannot tell whose request caused it, so it runs each
request of that batch alone: every request gets exactly the answer it gets alone (same seed, same
bits) or its own error. Requests whose deadline passed before their run started are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

from app.config import Settings
from app.engine.predictor import Prediction, PredictionRequest
from app.errors import DeadlineExceededError, OverloadedError, ShuttingDownError

RunBatch = Callable[[Sequence[PredictionRequest]], Sequence[Prediction | Exception]]
"""Samples a fused batch; one prediction or one error per request, in order."""
OnBatch = Callable[[int, list[float], list[PredictionRequest]], None]
"""Called with the fused batch's folded rows, each request's queue wait in seconds and the
requests, before the run."""


@dataclass
class _Pending:
    request: PredictionRequest
    future: asyncio.Future[Prediction]
    enqueued: float = field(default_factory=time.monotonic)
    abandoned: bool = False

    def answer(self, outcome: Prediction | BaseException | None) -> None:
        """Settle the future: a prediction, an error, or (None) cancelled for good."""
        if self.future.done():
            return
        if outcome is None:
            self.future.cancel()
        elif isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
            if self.abandoned:  # its waiter is gone (deadline, disconnect): mark it retrieved
                self.future.exception()
        else:
            self.future.set_result(outcome)


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
        idle: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self._idle = idle if max_wait_s == 0 else None
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

    @classmethod
    def for_settings(
        cls,
        name: str,
        run_batch: RunBatch,
        executor: Executor,
        settings: Settings,
        on_batch: OnBatch,
        idle: Callable[[], bool] | None = None,
    ) -> ModelBatcher:
        """A model's batcher with the server's batching settings (``max_batch_rows``,
        ``max_wait_ms``, ``max_queue``); ``idle`` as in :meth:`enqueue`."""
        return cls(
            name,
            run_batch,
            executor,
            max_batch_rows=settings.max_batch_rows,
            max_wait_s=settings.max_wait_ms / 1000.0,
            max_queue=settings.max_queue,
            on_batch=on_batch,
            idle=idle,
        )

    @property
    def waiting(self) -> int:
        """Requests queued and not yet running."""
        return self._queue.qsize() + (1 if self._held is not None else 0)

    @property
    def busy(self) -> bool:
        """Whether a run is going or requests wait for one."""
        return self._running or self.waiting > 0

    async def submit(
        self, request: PredictionRequest, timeout_s: float | None = None
    ) -> Prediction:
        """Queue ``request`` and wait for its prediction (``enqueue`` then ``result``)."""
        return await self.result(self.enqueue(request), timeout_s)

    def enqueue(self, request: PredictionRequest, queued_elsewhere: int = 0) -> Ticket:
        """Queue ``request`` now; raises OverloadedError when ``max_queue`` requests already
        wait (counting ``queued_elsewhere``), ShuttingDownError once ``stop`` was called."""
        if self._stopping:
            raise ShuttingDownError()
        if self.waiting + queued_elsewhere >= self.max_queue:
            raise OverloadedError(self.name, self.max_queue)
        pending = _Pending(request, asyncio.get_running_loop().create_future())
        if self._idle is not None and not self.busy and self._idle():
            self._run_here(pending)
            return pending
        self._ensure_running()
        self._queue.put_nowait(pending)
        return pending

    def _run_here(self, pending: _Pending) -> None:
        """Run one request now, on the calling (event-loop) thread: with ``idle`` (a batcher of
        the inference process, ``max_wait_ms`` 0) nothing is running or waiting, for this model
        or any other, so the run would start at once on the inference thread anyway; here it
        saves the two thread hops and the batcher loop's turns (about 0.3 ms a request,
        measured). Requests that arrive meanwhile wait in the socket and fuse into the next
        run, as they would behind a run on the inference thread."""
        if self._on_batch is not None:
            self._on_batch(pending.request.folded_rows, [0.0], [pending.request])
        self._running = True
        try:
            (outcome,) = self._run_batch([pending.request])
        except Exception as exc:
            outcome = exc
        finally:
            self._running = False
        pending.answer(outcome)

    async def result(self, ticket: Ticket, timeout_s: float | None = None) -> Prediction:
        """Wait for a queued request's prediction; DeadlineExceededError after ``timeout_s``
        (the request is then dropped if its run has not started)."""
        if ticket.future.done():  # run at once by enqueue: no timer, no turn of the loop
            return ticket.future.result()
        try:
            return await asyncio.wait_for(asyncio.shield(ticket.future), timeout_s)
        # wait_for raises TimeoutError from Python 3.11 on (the oldest supported; on 3.10 it
        # raised asyncio.TimeoutError, which this would not catch).
        except TimeoutError:
            ticket.abandoned = True
            raise DeadlineExceededError(timeout_s or 0.0) from None
        except asyncio.CancelledError:
            ticket.abandoned = True
            raise

    async def stop(self, grace_s: float | None = None) -> None:
        """Refuse new work and let the queued requests run, then stop the loop. After
        ``grace_s`` seconds, requests still waiting or running are answered with
        ShuttingDownError (a running sampling run is abandoned, not waited for)."""
        self._stopping = True
        if self._task is None:
            return
        deadline = None if grace_s is None else time.monotonic() + grace_s
        while self.busy and (deadline is None or time.monotonic() < deadline):
            await asyncio.sleep(0.005)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._refuse_waiting()

    def _refuse_waiting(self) -> None:
        if self._held is not None:
            self._held.answer(ShuttingDownError())
            self._held = None
        while not self._queue.empty():
            self._queue.get_nowait().answer(ShuttingDownError())

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name=f"mcdrop-batcher-{self.name}"
            )

    async def _loop(self) -> None:
        while True:
            batch = await self._gather()
            try:
                await self._run(batch)
            except asyncio.CancelledError:
                for pending in batch:
                    pending.answer(ShuttingDownError())
                raise

    async def _gather(self) -> list[_Pending]:
        first = self._held if self._held is not None else await self._queue.get()
        self._held = None
        batch, rows = [first], first.request.folded_rows
        deadline = first.enqueued + self.max_wait_s
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
            if remaining <= 0:
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
            waits = [started - p.enqueued for p in live]
            self._on_batch(rows, waits, [p.request for p in live])
        self._running = True
        try:
            outcomes = await self._sample(live)
        finally:
            self._running = False
        for pending, outcome in zip(live, outcomes, strict=True):
            pending.answer(outcome)

    async def _sample(self, live: list[_Pending]) -> Sequence[Prediction | BaseException | None]:
        """One outcome per request: the fused run's, or each request's own run if it failed."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, self._run_batch, [p.request for p in live]
            )
        except Exception as exc:
            if len(live) == 1:
                return [exc]
        outcomes: list[Prediction | BaseException | None] = []
        for pending in live:
            if pending.abandoned:
                outcomes.append(None)
                continue
            try:
                alone = await loop.run_in_executor(
                    self._executor, self._run_batch, [pending.request]
                )
                outcomes.append(alone[0])
            except Exception as exc:
                outcomes.append(exc)
        return outcomes
