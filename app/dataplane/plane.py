"""The data plane: every route's work enters here, transport-neutral (it knows nothing of HTTP).

One path for all of it: the request policy turns options into an engine request (or refuses
it), admission bounds what waits per model (``max_queue``, 503), every request has a deadline
(``request_timeout_s``, 504), work runs on one inference thread so the event loop stays free,
nothing new is taken while draining, and accounting records each outcome. Predictions go
through the model's micro-batcher; evaluations and other whole-request jobs are admitted the same
way and run on the same thread, in steps, so that cancelling them stops the work.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from torch import Tensor

from app.config import Settings
from app.dataplane.accounting import Accounting
from app.dataplane.batcher import ModelBatcher
from app.dataplane.evaluation import EvaluationJob
from app.dataplane.feedback import FeedbackScore, score_matches
from app.dataplane.feedback_store import FeedbackStore, HeldPrediction, Owner
from app.dataplane.policy import PredictOptions, RequestPolicy
from app.dataplane.ranking import RankingJob, RankQuery
from app.dataplane.remote import CallJob, InferenceClient, RemoteBatcher
from app.dataplane.step import Step, Workers
from app.dataplane.worker import InferenceThread
from app.engine.abstention import RankingScore
from app.engine.evaluation import DEFAULT_COVERAGES, Evaluation
from app.engine.predictor import Prediction
from app.engine.ranking import Ranking
from app.errors import (
    DeadlineExceededError,
    InvalidInputError,
    OverloadedError,
    ShuttingDownError,
)
from app.inputs.base import Rows
from app.metrics import Metrics
from app.registry.repository import ModelRepository
from app.registry.served import ServedModel

Batcher = ModelBatcher | RemoteBatcher

T = TypeVar("T")

SHUTDOWN_GRACE_S = 5.0
"""How long closing waits, past the request deadline, before abandoning running work."""
SHUTDOWN_JOIN_S = 1.0
"""How long closing then waits for the inference thread to end (abandoned work may not)."""


class DataPlane:
    """Runs every route's work through one admission, on one inference thread (or, with
    ``remote``, samples in the inference process: see :mod:`app.dataplane.remote`)."""

    def __init__(
        self,
        repository: ModelRepository,
        settings: Settings,
        metrics: Metrics,
        remote: InferenceClient | None = None,
    ) -> None:
        self.repository = repository
        self.remote = remote
        self.settings = settings
        self.policy = RequestPolicy(settings)
        self.accounting = Accounting(metrics, repository)
        self._executor = InferenceThread()
        self._decoder = ThreadPoolExecutor(settings.decode_threads, "mcdrop-decode")
        """Turns bodies into tensors (decoding, tokenizing) off the event loop."""
        self._workers = Workers(self._executor, self._decoder, settings.request_timeout_s)
        self._batchers: dict[str, tuple[ServedModel, Batcher]] = {}
        self._jobs: Counter[str] = Counter()
        self._draining = False
        self.feedback = FeedbackStore(
            settings.feedback_max_predictions,
            settings.feedback_max_age_s,
            settings.feedback_max_bytes,
        )
        """Recent /v1 predictions awaiting labels (touched on the event loop only)."""
        self._evaluating = asyncio.Semaphore(1)

    # ---- routes -------------------------------------------------------------------------

    async def predict(
        self,
        name: str,
        rows: Rows,
        options: PredictOptions,
        endpoint: str,
        version: str | None = None,
    ) -> tuple[ServedModel, Prediction]:
        """Validate, sample (fused with concurrent requests) and summarise one request."""
        model, _, prediction = await self._predict(name, rows, options, endpoint, version)
        return model, prediction

    async def predict_held(
        self, name: str, rows: Rows, options: PredictOptions, endpoint: str, owner: Owner
    ) -> tuple[ServedModel, Prediction, str | None]:
        """A prediction held for labelled feedback by ``owner``, with the ``prediction_id`` it
        is held under (None when the store is off, the prediction is too large for it, or its
        task has no feedback scores)."""
        model, inputs, prediction = await self._predict(name, rows, options, endpoint)
        prediction_id = None
        if model.task.feedback:
            prediction_id = self.feedback.remember(owner, model.name, inputs, prediction)
        return model, prediction, prediction_id

    async def _predict(
        self,
        name: str,
        rows: Rows,
        options: PredictOptions,
        endpoint: str,
        version: str | None = None,
    ) -> tuple[ServedModel, Tensor, Prediction]:
        with self.accounting.track(name, endpoint):
            if self._draining:
                raise ShuttingDownError()
            model = self.repository.get(name, version)
            async with self.admitted(model) as step:
                inline = model.input_kind.builds_inline(rows)
                request = await step.prepare(
                    self.policy.prediction, model, rows, options, inline=inline
                )
            batcher = self.batcher(model)
            ticket = batcher.enqueue(request, queued_elsewhere=self._jobs[model.name])
            prediction = await self._result(batcher, ticket, step.deadline)
            self.accounting.observe_prediction(model, int(request.inputs.shape[0]), prediction)
            return model, request.inputs, prediction

    async def record_feedback(
        self,
        name: str,
        targets: Sequence[Any],
        endpoint: str,
        owner: Owner,
        prediction_id: str | None = None,
        rows: Rows | None = None,
    ) -> tuple[ServedModel, FeedbackScore]:
        """Match labels to ``owner``'s held predictions (by prediction id, or by exact rows),
        score them and count them in the live-coverage metrics. Admitted like any route; 404
        for predictions never held (or held for another owner), 410 for those expired, pushed
        out or already labelled; refused labels (422) leave the prediction held."""
        with self.accounting.track(name, endpoint):
            model = self.repository.get(name)
            parsed = self.policy.targets(model, targets)
            async with self.admitted(model) as step:
                if prediction_id is not None:
                    held, unused = self.feedback.find(
                        owner, model.name, prediction_id, len(targets)
                    )
                    matches = [(held, int(row), int(row)) for row in unused]
                    score = await step(score_matches, matches, parsed)
                    self.feedback.settle(held)
                else:
                    assert rows is not None
                    found = await self._find_rows(step, model, owner, rows, len(targets))
                    matches = [(held, row, entry) for entry, (held, row) in enumerate(found)]
                    score = await step(score_matches, matches, parsed)
                    self.feedback.settle_rows(found)
            self.accounting.observe_feedback(model.name, score)
            return model, score

    async def _find_rows(
        self, step: Step, model: ServedModel, owner: Owner, rows: Rows, targets: int
    ) -> list[tuple[HeldPrediction, int]]:
        inputs = await step.prepare(self.policy.feedback_rows, model, rows)
        if int(inputs.shape[0]) != targets:
            raise InvalidInputError("targets", f"has {targets} entries for {inputs.shape[0]} rows")
        return self.feedback.find_rows(owner, model.name, inputs)

    async def evaluate(
        self,
        name: str,
        rows: Rows,
        targets: Sequence[Any],
        options: PredictOptions,
        endpoint: str,
        coverages: Sequence[float] = DEFAULT_COVERAGES,
        ranking_score: RankingScore = "predictive_entropy",
    ) -> tuple[ServedModel, Evaluation]:
        """Sample labelled rows and score them against their targets.

        Admitted like a prediction; sampled in blocks of passes of about ``max_batch_rows``
        folded rows, each its own step on the inference thread (predictions interleave, and a
        cancelled or late evaluation stops at the next step); one evaluation at a time. Not
        counted in the uncertainty histograms or abstentions, which describe live traffic.
        """
        with self.accounting.track(name, endpoint):
            model = self.repository.get(name)
            parsed = self.policy.targets(model, targets)
            async with self.admitted(model) as step:
                request = await step.prepare(self.policy.evaluation, model, rows, options)
                job = EvaluationJob.of(model, request, parsed, coverages, ranking_score)
                # One at a time: each holds every pass of its rows (max_evaluation_values).
                return model, await self._run_job(step, model, job, exclusive=True)

    async def rank(
        self, name: str, rows: Rows, options: PredictOptions, query: RankQuery, endpoint: str
    ) -> tuple[ServedModel, Ranking]:
        """The ``query.k`` rows most worth labelling. Admitted like an evaluation, with its own
        bounds (``max_rows_per_rank``, ``max_rank_candidates``), scored in short steps."""
        with self.accounting.track(name, endpoint):
            model = self.repository.get(name)
            async with self.admitted(model) as step:
                request = await step.prepare(self.policy.ranking, model, rows, options)
                job = RankingJob.of(model, request, query, self.settings)
                return model, await self._run_job(step, model, job)

    async def run(
        self, name: str, endpoint: str, work: Callable[[ServedModel], T], version: str | None = None
    ) -> tuple[ServedModel, T]:
        """Run ``work(model)`` on the inference thread as one admitted job of ``endpoint``
        (queue bound, deadline, draining and accounting as for a prediction). For routes whose
        work is not a plain prediction; keep ``work`` short or split it (it cannot be stopped
        once started)."""
        with self.accounting.track(name, endpoint):
            model = self.repository.get(name, version)
            async with self.admitted(model) as step:
                if self.remote is not None:
                    return model, await self._run_job(step, model, CallJob(work, model))
                return model, await step(work, model)

    async def _run_job(
        self,
        step: Step,
        model: ServedModel,
        job: EvaluationJob | RankingJob | CallJob[T],
        *,
        exclusive: bool = False,
    ) -> Any:
        """``job.run`` on the inference thread, here or in the inference process; with
        ``exclusive``, one such job at a time."""
        if self.remote is not None:
            elsewhere = self._jobs[model.name] - 1
            return await self.remote.run_job(model, job, step.deadline, exclusive, elsewhere)
        if not exclusive:
            return await job.run(step, self.settings.max_batch_rows)
        async with step.exclusive(self._evaluating):
            return await job.run(step, self.settings.max_batch_rows)

    async def _result(self, batcher: Batcher, ticket: Any, deadline: float) -> Prediction:
        """The batcher's answer to ``ticket`` by ``deadline`` (the request's, from admission)."""
        remaining = max(0.0, deadline - time.monotonic())
        try:
            return await batcher.result(ticket, timeout_s=remaining)
        except DeadlineExceededError:
            raise DeadlineExceededError(self.settings.request_timeout_s) from None

    # ---- admission ----------------------------------------------------------------------

    @asynccontextmanager
    async def admitted(self, model: ServedModel) -> AsyncIterator[Step]:
        """Admit one whole-request job for ``model``: refused while draining (503) or when
        ``max_queue`` requests already wait for it (503). Yields ``step``, which runs a
        function on the inference thread within the job's deadline (504 past it)."""
        if self._draining:
            raise ShuttingDownError()
        waiting = self._jobs[model.name] + self.batcher(model).waiting
        if waiting >= self.settings.max_queue:
            raise OverloadedError(model.name, self.settings.max_queue)
        self._jobs[model.name] += 1
        try:
            yield Step(self._workers, time.monotonic() + self.settings.request_timeout_s)
        finally:
            self._jobs[model.name] -= 1

    def batcher(self, model: ServedModel) -> Batcher:
        """The model's batcher, created on first use (and anew for a reloaded model)."""
        served, found = self._batchers.get(model.name, (None, None))
        if found is None or served is not model:
            found = self._new_batcher(model)
            self._batchers[model.name] = (model, found)
        return found

    def _new_batcher(self, model: ServedModel) -> Batcher:
        if self.remote is not None:
            return RemoteBatcher(self.remote, model)
        return ModelBatcher.for_settings(
            model.name,
            model.predictor.predict_each,
            self._executor,
            self.settings,
            self.accounting.batch_observer(model.name),
        )

    def count_refused(self, name: str, endpoint: str, error: BaseException | None = None) -> None:
        """Count a request refused before it reached the plane (see ``Accounting``)."""
        self.accounting.count_refused(name, endpoint, error)

    # ---- lifecycle ----------------------------------------------------------------------

    async def forget(self, name: str) -> None:
        """Stop the batcher of ``name`` after its queued work (the model is being replaced)."""
        pair = self._batchers.pop(name, None)
        if pair is not None:
            await pair[1].stop()

    async def close(self, grace_s: float | None = None) -> None:
        """Refuse new work and let queued and running work finish for up to ``grace_s``
        (``request_timeout_s`` + 5 s by default); whatever is left is answered with 503 and
        its running sampling abandoned, so closing always ends in time."""
        self._draining = True
        if grace_s is None:
            grace_s = self.settings.request_timeout_s + SHUTDOWN_GRACE_S
        deadline = time.monotonic() + grace_s
        for _, batcher in list(self._batchers.values()):
            await batcher.stop(max(0.0, deadline - time.monotonic()))
        while sum(self._jobs.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self._workers.abandon()
        if self.remote is not None:
            await self.remote.close()
        await asyncio.to_thread(self._executor.join, SHUTDOWN_JOIN_S)

    async def connect(self) -> None:
        """With ``remote``: connect to the inference process and serve its models."""
        if self.remote is not None:
            self.repository.adopt(await self.remote.connect(self.accounting.observe_batch))

    @property
    def abandoned(self) -> bool:
        """True once ``close`` gave up waiting: no step of any job starts any more."""
        return self._workers.abandoned
