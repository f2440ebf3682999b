"""An HTTP worker's side of the inference process: one connection, requests multiplexed on it.

The data plane of a worker whose models are described (``Settings.inference_socket``) admits,
builds and accounts requests as in-process, then hands the engine request to
:class:`RemoteBatcher` (predictions) or :meth:`InferenceClient.run_job` (evaluations, ranks)
instead of its own batcher and thread. A request that its caller stops waiting for (client gone,
deadline, shutdown) is cancelled in the inference process too. The worker waits ``DEADLINE_SLACK_S``
past a request's deadline, since the inference process answers a late request itself (504).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from app.dataplane import wire
from app.dataplane.inference import Entry, Job
from app.dataplane.step import Step
from app.engine.predictor import Prediction, PredictionRequest
from app.errors import DeadlineExceededError, InferenceUnavailableError, ShuttingDownError
from app.registry.described import described_model
from app.registry.repository import ModelEntry
from app.registry.served import ServedModel

T = TypeVar("T")

DEADLINE_SLACK_S = 1.0
"""How long past a request's deadline a worker waits for the inference process's own answer."""

Observer = Callable[[str, "int | None", list[float]], None]
"""Records a fused run's folded rows (or None) and queue waits for a model."""


class InferenceClient:
    """One worker's connection to the inference process."""

    def __init__(self, socket: Path, request_timeout_s: float) -> None:
        self.socket = socket
        self.request_timeout_s = request_timeout_s
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._outbox: wire.Outbox | None = None
        self._reading: asyncio.Task[None] | None = None
        self._observe: Observer | None = None
        self.lost = False
        """True once the connection broke (the inference process is gone)."""

    async def connect(self, observe: Observer) -> list[tuple[str, ModelEntry]]:
        """Open the connection; the repository entries of the inference process's models."""
        reader, self._writer = await asyncio.open_unix_connection(str(self.socket))
        self._outbox = wire.Outbox(self._writer)
        self._observe = observe
        self._reading = asyncio.get_running_loop().create_task(self._read(reader))
        entries: list[Entry] = await self.call("catalogue")
        return [
            (key, ModelEntry(name, folder, described_model(fields) if fields else None, error))
            for key, name, folder, fields, error in entries
        ]

    async def call(self, kind: str, *args: Any) -> Any:
        """Send one message and wait for its reply; cancelled, it cancels it over there."""
        if self.lost or self._outbox is None:
            raise InferenceUnavailableError()
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        try:
            self._outbox.send((kind, ident, *args))
            return await future
        except asyncio.CancelledError:
            self._send_cancel(ident)
            raise
        finally:
            self._pending.pop(ident, None)

    async def run_job(
        self, model: ServedModel, job: Job, deadline: float, exclusive: bool, elsewhere: int
    ) -> Any:
        """``job.run`` in the inference process, within ``deadline`` (``time.monotonic``)."""
        call = self.call("job", model.name, model.version, job, deadline, exclusive, elsewhere)
        return await self._by(call, deadline)

    async def _by(self, call: Any, deadline: float) -> Any:
        remaining = deadline - time.monotonic() + DEADLINE_SLACK_S
        try:
            # asyncio.timeout, not wait_for: no task of its own for the call (a turn of the
            # loop less each way); past the deadline the call is cancelled all the same.
            async with asyncio.timeout(max(0.0, remaining)):
                return await call
        except TimeoutError:
            raise DeadlineExceededError(self.request_timeout_s) from None

    def _send_cancel(self, ident: int) -> None:
        if self._outbox is not None:
            self._outbox.send(("cancel", ident))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await wire.read_message(reader)
                if message[0] == "observe" and self._observe is not None:
                    self._observe(*message[1:])
                    continue
                _, ident, ok, value = message
                future = self._pending.get(ident)
                if future is None or future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(wire.unpack_error(value))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.lost = True
            self.fail_pending(InferenceUnavailableError())

    def fail_pending(self, error: Exception) -> None:
        """Answer every request still waiting with ``error`` (and cancel it over there)."""
        for ident, future in list(self._pending.items()):
            if not future.done():
                future.set_exception(error)
                self._send_cancel(ident)

    async def close(self) -> None:
        """Answer what still waits with 503 and close the connection."""
        self.fail_pending(ShuttingDownError())
        if self._writer is not None:
            self._writer.close()
        if self._reading is not None:
            self._reading.cancel()


class RemoteBatcher:
    """A model's batcher as a worker sees it: its requests go to the inference process's
    batcher, which fuses them with every worker's (and bounds what waits, ``max_queue``)."""

    def __init__(self, client: InferenceClient, model: ServedModel) -> None:
        self.name = model.name
        self.version = model.version
        self._client = client
        self._in_flight = 0
        self._stopping = False

    @property
    def waiting(self) -> int:
        """0: requests wait in the inference process, which counts them for admission."""
        return 0

    @property
    def busy(self) -> bool:
        """Whether requests of this worker are queued or running over there."""
        return self._in_flight > 0

    def enqueue(self, request: PredictionRequest, queued_elsewhere: int = 0) -> _Ticket:
        """A ticket for ``request`` (sent by ``result``); ShuttingDownError once stopping."""
        if self._stopping:
            raise ShuttingDownError()
        return _Ticket(request, queued_elsewhere)

    async def result(self, ticket: _Ticket, timeout_s: float | None = None) -> Prediction:
        """Send the request and wait for its prediction (DeadlineExceededError past
        ``timeout_s``, measured from now)."""
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else 1e9)
        self._in_flight += 1
        try:
            call = self._client.call(
                "predict", self.name, self.version, ticket.request, deadline, ticket.elsewhere
            )
            prediction: Prediction = await self._client._by(call, deadline)
            return prediction
        finally:
            self._in_flight -= 1

    async def stop(self, grace_s: float | None = None) -> None:
        """Take no new request; wait up to ``grace_s`` for this worker's requests to end."""
        self._stopping = True
        deadline = None if grace_s is None else time.monotonic() + grace_s
        while self.busy and (deadline is None or time.monotonic() < deadline):
            await asyncio.sleep(0.005)


class _Ticket:
    def __init__(self, request: PredictionRequest, elsewhere: int) -> None:
        self.request = request
        self.elsewhere = elsewhere


class CallJob(Generic[T]):
    """``work(model)`` as a one-step job (``DataPlane.run`` in the inference process; both
    must pickle: a module-level function, a described model)."""

    def __init__(self, work: Callable[[ServedModel], T], model: ServedModel) -> None:
        self.work = work
        self.model = model

    async def run(self, step: Step, max_folded_rows: int) -> T:
        return await step(self.work, self.model)
