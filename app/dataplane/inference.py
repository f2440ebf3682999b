"""The inference process's service: every model loaded once, one micro-batcher per model fed by
every HTTP worker, and whole-request jobs (evaluations, ranks), on one inference thread.

HTTP workers build engine requests (policy, decoding, tokenizing) and send them here over their
connection (:mod:`app.dataplane.wire`); the batcher fuses requests of every worker into one
sampling run, with the same isolation, seeds and bits as in-process. Admission is global:
``max_queue`` counts what waits here from every worker. Each request carries its deadline
(``time.monotonic`` is the same clock in every process), a ``cancel`` from the worker (its client
went away, its deadline passed) drops a request whose run has not started and stops a job at its
next step. This process writes no metrics: it tells each worker the queue waits of its requests
and the folded rows of each fused run (to the worker of the run's first request, so a run is
counted once), and the workers record them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from app.config import Settings
from app.dataplane import wire
from app.dataplane.batcher import ModelBatcher, OnBatch
from app.dataplane.step import Step, Workers
from app.dataplane.worker import InferenceThread
from app.engine.predictor import Prediction, PredictionRequest
from app.errors import DeadlineExceededError, OverloadedError
from app.registry.described import describe
from app.registry.repository import ModelRepository
from app.registry.served import ServedModel

logger = logging.getLogger(__name__)

Entry = tuple[str, str, Path, dict[str, Any] | None, str | None]
"""One catalogue entry: (key, name, folder, described fields or None, load error or None)."""


class Job(Protocol):
    """A whole-request job (``EvaluationJob``, ``RankingJob``): steps on the inference thread."""

    def run(self, step: Any, max_folded_rows: int) -> Awaitable[Any]: ...


class _Connection:
    """One HTTP worker's socket: messages out, and its requests in progress (by id)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.outbox = wire.Outbox(writer)
        self.tasks: dict[int, asyncio.Task[None]] = {}

    def send(self, message: Any) -> None:
        self.outbox.send(message)


class InferenceService:
    """Serves predictions and jobs of the models in ``repository`` to HTTP workers."""

    def __init__(self, repository: ModelRepository, settings: Settings) -> None:
        self.repository = repository
        self.settings = settings
        self._executor = InferenceThread()
        decode = ThreadPoolExecutor(1, "mcdrop-decode")
        self._workers = Workers(self._executor, decode, settings.request_timeout_s)
        self._batchers: dict[str, ModelBatcher] = {}
        self._jobs: Counter[str] = Counter()
        self._origins: dict[int, _Connection] = {}
        """id(request) -> the connection it came from, while it is queued or running."""
        self._arriving: set[tuple[int, int]] = set()
        """(connection, ident) of predictions read and not yet queued: while any wait, a batcher
        never runs a request at once on the loop (it would run alone ahead of them, unfused)."""
        self._evaluating = asyncio.Semaphore(1)
        self.loaded = asyncio.Event()
        """Set once the repository's models are loaded: the catalogue waits for it."""
        self._handlers: dict[str, Callable[..., Awaitable[Any]]] = {
            "catalogue": self._catalogue,
            "predict": self._predict,
            "job": self._job,
        }

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer one worker's messages until it closes the socket (its requests then stop)."""
        connection = _Connection(writer)
        try:
            while True:
                kind, ident, *args = await wire.read_message(reader)
                if kind == "cancel":
                    task = connection.tasks.get(ident)
                    if task is not None:
                        task.cancel()
                    continue
                task = asyncio.create_task(self._answer(connection, kind, ident, args))
                connection.tasks[ident] = task
                if kind == "predict":
                    key = (id(connection), ident)
                    self._arriving.add(key)
                    task.add_done_callback(partial(self._arrived, key))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for task in list(connection.tasks.values()):
                task.cancel()
            writer.close()

    async def _answer(
        self, connection: _Connection, kind: str, ident: int, args: list[Any]
    ) -> None:
        self._arriving.discard((id(connection), ident))
        try:
            value = await self._handlers[kind](connection, *args)
            reply: tuple[Any, ...] = ("reply", ident, True, value)
        except asyncio.CancelledError:
            return  # the worker no longer waits for it
        except Exception as exc:
            reply = ("reply", ident, False, wire.pack_error(exc))
        finally:
            connection.tasks.pop(ident, None)
        try:
            connection.send(reply)
        except Exception as exc:  # an error or value that does not pickle
            logger.exception("inference reply %d could not be sent", ident)
            connection.send(("reply", ident, False, wire.pack_error(RuntimeError(str(exc)))))

    async def _catalogue(self, connection: _Connection) -> list[Entry]:
        """Every repository entry, described without weights (once they are loaded)."""
        await self.loaded.wait()
        return [
            (
                key,
                entry.name,
                entry.folder,
                describe(entry.model) if entry.model else None,
                entry.error,
            )
            for key, entry in self.repository.keyed_entries()
        ]

    async def _predict(
        self,
        connection: _Connection,
        name: str,
        version: str,
        request: PredictionRequest,
        deadline: float,
        queued_elsewhere: int,
    ) -> Prediction:
        """Queue ``request`` in its model's batcher (fused with every worker's) and answer it."""
        model = self.repository.get(name, version)
        batcher = self._batcher(model)
        elsewhere = queued_elsewhere + self._jobs[model.name]
        # Its origin first: a request run at once by enqueue reports its run (observe) there.
        self._origins[id(request)] = connection
        try:
            ticket = batcher.enqueue(request, queued_elsewhere=elsewhere)
            return await batcher.result(ticket, timeout_s=max(0.0, deadline - time.monotonic()))
        except DeadlineExceededError:
            raise DeadlineExceededError(self.settings.request_timeout_s) from None
        finally:
            self._origins.pop(id(request), None)

    async def _job(
        self,
        connection: _Connection,
        name: str,
        version: str,
        job: Job,
        deadline: float,
        exclusive: bool,
        queued_elsewhere: int,
    ) -> Any:
        """Run ``job`` here, admitted against what waits for its model from every worker."""
        model = self.repository.get(name, version)
        waiting = self._jobs[model.name] + self._batcher(model).waiting + queued_elsewhere
        if waiting >= self.settings.max_queue:
            raise OverloadedError(model.name, self.settings.max_queue)
        self._jobs[model.name] += 1
        try:
            step = Step(self._workers, deadline)
            if not exclusive:
                return await job.run(step, self.settings.max_batch_rows)
            async with step.exclusive(self._evaluating):
                return await job.run(step, self.settings.max_batch_rows)
        finally:
            self._jobs[model.name] -= 1

    def _arrived(self, key: tuple[int, int], _: object) -> None:
        self._arriving.discard(key)

    def _idle(self) -> bool:
        """Nothing runs on the inference thread and no other prediction waits to be queued."""
        return self._executor.idle() and not self._arriving

    def _batcher(self, model: ServedModel) -> ModelBatcher:
        found = self._batchers.get(model.name)
        if found is None:
            found = ModelBatcher.for_settings(
                model.name,
                model.predictor.predict_each,
                self._executor,
                self.settings,
                self._observer(model.name),
                idle=self._idle,
            )
            self._batchers[model.name] = found
        return found

    def _observer(self, name: str) -> OnBatch:
        """Sends each worker its requests' queue waits, and the run's rows to the first's."""

        def observe(rows: int, waits: list[float], requests: list[PredictionRequest]) -> None:
            by_origin: dict[_Connection, list[float]] = {}
            for request, wait in zip(requests, waits, strict=True):
                origin = self._origins.get(id(request))
                if origin is not None:
                    by_origin.setdefault(origin, []).append(wait)
            for position, (origin, its_waits) in enumerate(by_origin.items()):
                origin.send(("observe", name, rows if position == 0 else None, its_waits))

        return observe
