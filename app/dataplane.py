"""Transport-neutral request handling: validate against the model, sample, record metrics.

Both the native ``/v1`` API and the Open Inference Protocol ``/v2`` API call into this; it knows
nothing about HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from torch import Tensor

from app.batching.batcher import ModelBatcher, OnBatch
from app.config import Settings
from app.engine.abstention import RankingScore
from app.engine.evaluation import DEFAULT_COVERAGES, Evaluation, evaluate, parse_targets
from app.engine.images import images_to_tensor
from app.engine.inputs import rows_to_tensor
from app.engine.predictor import Prediction, PredictionRequest
from app.engine.stats import ClassificationStats
from app.errors import InvalidInputError, McdropError
from app.metrics import Metrics
from app.registry.loading import ServedModel
from app.registry.repository import ModelRepository


@dataclass(frozen=True)
class PredictOptions:
    """MC options of one request, before defaults are applied."""

    n_samples: int | Literal["auto"] | None = None
    seed: int | None = None
    ci_level: float | None = None
    return_samples: bool = False
    tolerance: float | None = None
    """Adaptive N only: target MC standard error (the setting's default when None)."""
    max_n_samples: int | None = None
    """Adaptive N only: cap on the samples (the model's maximum when None)."""


def _check_samples(field: str, value: int, maximum: int) -> None:
    if value < 1:
        raise InvalidInputError(field, f"must be at least 1, got {value}")
    if value > maximum:
        raise InvalidInputError(field, f"{value} exceeds this model's maximum of {maximum}")


def outcome_of(error: BaseException | None) -> str:
    """Metric label for how a request ended."""
    if error is None:
        return "success"
    status = error.status_code if isinstance(error, McdropError) else 500
    return "client_error" if 400 <= status < 500 else "server_error"


class DataPlane:
    """Runs predictions for the HTTP layer.

    Requests go through one micro-batcher per model; sampling runs on one dedicated inference
    thread, so the event loop keeps answering health and metrics during long runs.
    """

    def __init__(self, repository: ModelRepository, settings: Settings, metrics: Metrics) -> None:
        self.repository = repository
        self.settings = settings
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcdrop-infer")
        self._batchers: dict[str, tuple[ServedModel, ModelBatcher]] = {}

    def batcher(self, model: ServedModel) -> ModelBatcher:
        """The model's batcher, created on first use (and anew for a reloaded model)."""
        served, found = self._batchers.get(model.name, (None, None))
        if found is None or served is not model:
            found = ModelBatcher(
                model.name,
                model.predictor.predict_many,
                self._executor,
                max_batch_rows=self.settings.max_batch_rows,
                max_wait_s=self.settings.max_wait_ms / 1000.0,
                max_queue=self.settings.max_queue,
                on_batch=self._batch_observer(model.name),
            )
            self._batchers[model.name] = (model, found)
        return found

    async def forget(self, name: str) -> None:
        """Stop the batcher of ``name`` after its queued work (the model is being replaced)."""
        pair = self._batchers.pop(name, None)
        if pair is not None:
            await pair[1].stop()

    async def close(self) -> None:
        """Refuse new work, let queued and running samples finish, stop the inference thread."""
        for _, batcher in list(self._batchers.values()):
            await batcher.stop()
        self._executor.shutdown(wait=True)

    def _batch_observer(self, name: str) -> OnBatch:
        def observe(rows: int, waits: list[float]) -> None:
            self.metrics.batch_rows.labels(name).observe(rows)
            for wait in waits:
                self.metrics.queue_wait.labels(name).observe(wait)

        return observe

    async def predict(
        self,
        name: str,
        rows: Sequence[Any],
        options: PredictOptions,
        endpoint: str,
        version: str | None = None,
    ) -> tuple[ServedModel, Prediction]:
        """Validate, sample and summarise one request; metrics record its outcome."""
        with self.track(name, endpoint):
            model = self.repository.get(name, version)
            batcher = self.batcher(model)
            with batcher.expecting():
                request = self.build_request(model, rows, options)
                ticket = batcher.enqueue(request)
            prediction = await batcher.result(ticket, timeout_s=self.settings.request_timeout_s)
            self._observe(model, request, prediction)
            return model, prediction

    async def evaluate(
        self,
        name: str,
        rows: Sequence[Any],
        targets: Sequence[Any],
        options: PredictOptions,
        endpoint: str,
        coverages: Sequence[float] = DEFAULT_COVERAGES,
        ranking_score: RankingScore = "predictive_entropy",
    ) -> tuple[ServedModel, Evaluation]:
        """Sample labelled rows and score them against their targets (on the inference thread).

        Up to ``max_rows_per_evaluation`` rows; not counted in the uncertainty histograms or
        abstentions, which describe live traffic.
        """
        with self.track(name, endpoint):
            model = self.repository.get(name)
            limit = self.settings.max_rows_per_evaluation
            request = self.build_request(model, rows, options, max_rows=limit)
            spec = model.predictor.spec
            target = parse_targets(targets, spec, model.card.labels, model.output_shape)
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(
                self._executor,
                partial(evaluate, model.predictor, request, target, coverages, ranking_score),
            )
            return model, result

    def build_request(
        self,
        model: ServedModel,
        rows: Sequence[Any],
        options: PredictOptions,
        max_rows: int | None = None,
    ) -> PredictionRequest:
        """Apply the model's defaults and limits to the request's options and rows
        (at most ``max_rows`` rows, ``max_rows_per_request`` by default; the rows x samples
        cap grows in proportion for a larger ``max_rows``)."""
        n_samples, tolerance = self._sample_budget(model, options)
        ci_level = (
            options.ci_level if options.ci_level is not None else self.settings.default_ci_level
        )
        if not 0.0 < ci_level < 1.0:
            raise InvalidInputError(
                "ci_level", f"must be between 0 and 1 (exclusive), got {ci_level}"
            )
        limit = max_rows if max_rows is not None else self.settings.max_rows_per_request
        inputs = self._input_tensor(model, rows, limit)
        scale = max(1, -(-limit // self.settings.max_rows_per_request))
        sample_limit = self.settings.max_request_sample_rows * scale
        sample_rows = int(inputs.shape[0]) * n_samples
        if sample_rows > sample_limit:
            raise InvalidInputError(
                "n_samples",
                f"{inputs.shape[0]} rows x {n_samples} samples = {sample_rows} exceeds the limit "
                f"of {sample_limit} (max_request_sample_rows)",
            )
        return PredictionRequest(
            inputs=inputs,
            n_samples=n_samples,
            ci_level=ci_level,
            seed=options.seed,
            return_samples=options.return_samples,
            tolerance=tolerance,
        )

    def _input_tensor(self, model: ServedModel, rows: Sequence[Any], limit: int) -> Tensor:
        """Input rows as a tensor: encoded images decoded by an image model's pipeline, or
        float rows of the card's shape."""
        pixels = self.settings.max_image_pixels
        images = images_to_tensor(rows, model.images, limit, pixels)
        if images is not None:
            return images
        return rows_to_tensor(rows, model.card.input.shape, limit)

    def _sample_budget(
        self, model: ServedModel, options: PredictOptions
    ) -> tuple[int, float | None]:
        """(N, None) for a fixed N; (cap, tolerance) for ``"auto"``. Checks the model's limits."""
        limits = model.card.n_samples
        if options.n_samples == "auto":
            tolerance = options.tolerance or self.settings.default_tolerance
            if tolerance <= 0:
                raise InvalidInputError("tolerance", f"must be positive, got {tolerance}")
            cap = options.max_n_samples if options.max_n_samples is not None else limits.max
            _check_samples("max_n_samples", cap, limits.max)
            return cap, tolerance
        if options.tolerance is not None or options.max_n_samples is not None:
            field = "tolerance" if options.tolerance is not None else "max_n_samples"
            raise InvalidInputError(field, 'only applies with "n_samples": "auto"')
        n_samples = options.n_samples if options.n_samples is not None else limits.default
        _check_samples("n_samples", n_samples, limits.max)
        return n_samples, None

    def count_rejected(self, model: str, endpoint: str) -> None:
        """Count a request refused before it reached the data plane (schema validation)."""
        self.metrics.requests.labels(self._label(model), endpoint, "client_error").inc()

    def _label(self, model: str) -> str:
        """The metric label of a model name: names not in the repository are counted as
        ``_unknown`` so that clients cannot grow the label set without bound."""
        return model if model in self.repository else "_unknown"

    @contextmanager
    def track(self, model: str, endpoint: str) -> Iterator[None]:
        """Count the request, time it and track it as in flight (under ``_label(model)``)."""
        started = time.perf_counter()
        model = self._label(model)
        inflight = self.metrics.inflight_requests.labels(model=model)
        inflight.inc()
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            inflight.dec()
            self.metrics.requests.labels(model, endpoint, outcome_of(error)).inc()
            if error is None:
                self.metrics.request_duration.labels(model, endpoint).observe(
                    time.perf_counter() - started
                )

    def _observe(self, model: ServedModel, request: PredictionRequest, result: Prediction) -> None:
        name = model.name
        self.metrics.samples_per_request.labels(name).observe(result.n_samples)
        self.metrics.rows_per_request.labels(name).observe(int(request.inputs.shape[0]))
        if result.abstain is not None:
            self.metrics.abstentions.labels(name).inc(int(result.abstain.sum()))
        stats = result.stats
        if isinstance(stats, ClassificationStats):
            for value in stats.predictive_entropy.tolist():
                self.metrics.predictive_entropy.labels(name).observe(value)
            for value in stats.mutual_information.tolist():
                self.metrics.mutual_information.labels(name).observe(value)
        else:
            for value in stats.std.flatten().tolist():
                self.metrics.regression_std.labels(name).observe(value)
