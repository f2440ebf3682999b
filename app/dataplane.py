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
from typing import Any

from app.config import Settings
from app.engine.abstention import RankingScore
from app.engine.evaluation import DEFAULT_COVERAGES, Evaluation, evaluate, parse_targets
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

    n_samples: int | None = None
    seed: int | None = None
    ci_level: float | None = None
    return_samples: bool = False


def outcome_of(error: BaseException | None) -> str:
    """Metric label for how a request ended."""
    if error is None:
        return "success"
    status = error.status_code if isinstance(error, McdropError) else 500
    return "client_error" if 400 <= status < 500 else "server_error"


class DataPlane:
    """Runs predictions for the HTTP layer; sampling happens on a dedicated inference thread."""

    def __init__(self, repository: ModelRepository, settings: Settings, metrics: Metrics) -> None:
        self.repository = repository
        self.settings = settings
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcdrop-infer")

    def close(self) -> None:
        """Let running samples finish, then stop the inference thread."""
        self._executor.shutdown(wait=True)

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
            request = self.build_request(model, rows, options)
            loop = asyncio.get_running_loop()
            prediction = await loop.run_in_executor(
                self._executor, model.predictor.predict, request
            )
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
        (at most ``max_rows`` rows, ``max_rows_per_request`` by default)."""
        limits = model.card.n_samples
        n_samples = options.n_samples if options.n_samples is not None else limits.default
        if n_samples < 1:
            raise InvalidInputError("n_samples", f"must be at least 1, got {n_samples}")
        if n_samples > limits.max:
            raise InvalidInputError(
                "n_samples", f"{n_samples} exceeds this model's maximum of {limits.max}"
            )
        ci_level = (
            options.ci_level if options.ci_level is not None else self.settings.default_ci_level
        )
        if not 0.0 < ci_level < 1.0:
            raise InvalidInputError(
                "ci_level", f"must be between 0 and 1 (exclusive), got {ci_level}"
            )
        limit = max_rows if max_rows is not None else self.settings.max_rows_per_request
        inputs = rows_to_tensor(rows, model.card.input.shape, limit)
        return PredictionRequest(
            inputs=inputs,
            n_samples=n_samples,
            ci_level=ci_level,
            seed=options.seed,
            return_samples=options.return_samples,
        )

    def count_rejected(self, model: str, endpoint: str) -> None:
        """Count a request refused before it reached the data plane (schema validation)."""
        model = model if model in self.repository else "_unknown"
        self.metrics.requests.labels(model, endpoint, "client_error").inc()

    @contextmanager
    def track(self, model: str, endpoint: str) -> Iterator[None]:
        """Count the request, time it and track it as in flight.

        Names not in the repository are counted as ``_unknown`` so that clients cannot grow the
        label set without bound.
        """
        started = time.perf_counter()
        model = model if model in self.repository else "_unknown"
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
