"""Accounting: what the data plane records about requests (counts by outcome, latency, requests
in flight, queue waits, batch sizes, samples and the uncertainty it returned).

The one place that writes request metrics: the API calls ``count_refused`` for a request refused
before it reached the plane, the plane does the rest. Model names become metric labels only if
the repository knows them, so clients cannot grow the label set.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

from app.dataplane.batcher import OnBatch
from app.dataplane.feedback import FeedbackScore
from app.engine.predictor import Prediction
from app.errors import McdropError
from app.metrics import Metrics
from app.registry.repository import ModelRepository
from app.registry.served import ServedModel

UNKNOWN_MODEL = "_unknown"
"""The label of every model name the repository does not hold."""


def outcome_of(error: BaseException | None) -> str:
    """Metric label for how a request ended (``cancelled``: its task was cancelled, as when
    the client disconnected)."""
    if error is None:
        return "success"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    status = error.status_code if isinstance(error, McdropError) else 500
    return "client_error" if 400 <= status < 500 else "server_error"


class Accounting:
    """Request metrics of one app, labelled by model, endpoint and outcome."""

    def __init__(self, metrics: Metrics, repository: ModelRepository) -> None:
        self.metrics = metrics
        self.repository = repository

    def label(self, model: str) -> str:
        """The metric label of a model name (``_unknown`` for names not in the repository)."""
        return model if model in self.repository else UNKNOWN_MODEL

    def count_refused(self, model: str, endpoint: str, error: BaseException | None = None) -> None:
        """Count a request refused before it reached the data plane (schema validation, a bad
        tensor): a client error unless ``error`` says otherwise."""
        outcome = "client_error" if error is None else outcome_of(error)
        self.metrics.requests.labels(self.label(model), endpoint, outcome).inc()

    @contextmanager
    def track(self, model: str, endpoint: str) -> Iterator[None]:
        """Count the request, time it and track it as in flight (under ``label(model)``)."""
        started = time.perf_counter()
        model = self.label(model)
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

    def batch_observer(self, model: str) -> OnBatch:
        """Records each fused run's folded rows and its requests' queue waits."""

        def observe(rows: int, waits: list[float], requests: object) -> None:
            self.observe_batch(model, rows, waits)

        return observe

    def observe_batch(self, model: str, rows: int | None, waits: list[float]) -> None:
        """A fused run's folded rows (None: another worker counts them) and queue waits."""
        if rows is not None:
            self.metrics.batch_rows.labels(model).observe(rows)
        for wait in waits:
            self.metrics.queue_wait.labels(model).observe(wait)

    def observe_feedback(self, model: str, score: FeedbackScore) -> None:
        """Labelled rows, interval checks and per-row scores of one feedback."""
        record_feedback(self.metrics, model, score)

    def observe_prediction(self, served: ServedModel, rows: int, result: Prediction) -> None:
        """Samples, rows, abstentions and the returned uncertainty of one live prediction
        (the histograms the model's task observes)."""
        model, task = served.name, served.task
        self.metrics.samples_per_request.labels(model).observe(result.n_samples)
        self.metrics.rows_per_request.labels(model).observe(rows)
        if result.abstain is not None:
            self.metrics.abstentions.labels(model).inc(int(result.abstain.sum()))
        if result.shift is not None:
            self.metrics.shift_flags.labels(model).inc(int(result.shift.flag.sum()))
            shift_histogram = self.metrics.shift_score.labels(model)
            for value in result.shift.score.tolist():
                shift_histogram.observe(value)
        for histogram, values in task.observations(result.stats).items():
            metric = getattr(self.metrics, histogram).labels(model)
            for value in values.flatten().tolist():
                metric.observe(value)


def record_feedback(metrics: Metrics, model: str, score: FeedbackScore) -> None:
    """Count the rows, the interval checks and the per-row scores under ``model``."""
    metrics.feedback.labels(model).inc(score.rows)
    for name, (covered, checked, nominal) in score.checks.items():
        metrics.interval_covered.labels(model, name).inc(covered)
        metrics.interval_checked.labels(model, name).inc(checked)
        metrics.interval_nominal.labels(model, name).inc(nominal)
    metrics.feedback_log_likelihood.labels(model).inc(sum(score.log_likelihood))
    for value in score.brier or []:
        metrics.feedback_brier.labels(model).observe(value)
