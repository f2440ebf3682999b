"""Every Prometheus metric mcdrop exports, declared once.

Labels stay few (model, endpoint, outcome). Each app builds its own registry, so tests and
several apps in one process do not share counters.

With several worker processes, prometheus_client's multiprocess mode keeps every value in files
under ``PROMETHEUS_MULTIPROC_DIR`` and each scrape sums the files of all workers; gauges say how
(``multiprocess_mode``). That variable must be set before the workers start (``mcdrop serve
--workers N`` does it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SAMPLE_BUCKETS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
_ENTROPY_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0)
_STD_BUCKETS = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_BATCH_ROW_BUCKETS = (16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)
_SHIFT_BUCKETS = (1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0, 1000.0)
"""Mahalanobis distances (training stds): in-distribution rows of a 64-feature prefix sit near
sqrt(64) = 8, shifted ones far beyond."""
_BRIER_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)


def multiprocess_dir() -> Path | None:
    """The folder worker processes share metric values through, if multiprocess mode is on.

    prometheus_client reads ``PROMETHEUS_MULTIPROC_DIR`` itself, when it is first imported, to
    decide where values live; so this variable, not a setting, tells whether the mode is on.
    """
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def prepare_multiprocess_dir(path: Path) -> None:
    """Create ``path``, delete the metric files of earlier runs and export it to the workers.

    Call it in the parent before any worker process starts (and imports prometheus_client).
    """
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)


@dataclass(frozen=True)
class Metrics:
    """The metric objects of one app and the registry they live in."""

    registry: CollectorRegistry
    multiprocess_dir: Path | None
    requests: Counter
    request_duration: Histogram
    samples_per_request: Histogram
    rows_per_request: Histogram
    inflight_requests: Gauge
    queue_wait: Histogram
    batch_rows: Histogram
    model_ready: Gauge
    model_load_seconds: Gauge
    predictive_entropy: Histogram
    mutual_information: Histogram
    regression_std: Histogram
    abstentions: Counter
    shift_score: Histogram
    shift_flags: Counter
    feedback: Counter
    interval_covered: Counter
    interval_checked: Counter
    interval_nominal: Counter
    feedback_log_likelihood: Gauge
    feedback_brier: Histogram

    def render(self) -> tuple[bytes, str]:
        """Exposition text and its content type; in multiprocess mode, summed over workers."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        # A fresh registry per scrape: the collector reads every worker's files each time.
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        return generate_latest(combined), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Drop this process's live gauges from the shared files when the worker stops."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), str(self.multiprocess_dir))  # type: ignore[no-untyped-call]


def build_metrics(
    registry: CollectorRegistry | None = None, multiprocess_dir: Path | None = None
) -> Metrics:
    """Declare every metric in ``registry`` (a fresh one by default).

    ``multiprocess_dir`` turns on the aggregated exposition (see :func:`multiprocess_dir`).
    """
    reg = registry if registry is not None else CollectorRegistry()
    return Metrics(
        registry=reg,
        multiprocess_dir=multiprocess_dir,
        requests=Counter(
            "mcdrop_requests",
            "Prediction requests by model, endpoint and outcome.",
            ["model", "endpoint", "outcome"],
            registry=reg,
        ),
        request_duration=Histogram(
            "mcdrop_request_duration_seconds",
            "Time to answer a prediction request, from validation to response.",
            ["model", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        ),
        samples_per_request=Histogram(
            "mcdrop_samples_per_request",
            "Monte Carlo passes run per request.",
            ["model"],
            buckets=_SAMPLE_BUCKETS,
            registry=reg,
        ),
        rows_per_request=Histogram(
            "mcdrop_rows_per_request",
            "Input rows per request.",
            ["model"],
            buckets=_ROW_BUCKETS,
            registry=reg,
        ),
        inflight_requests=Gauge(
            "mcdrop_inflight_requests",
            "Prediction requests being processed now.",
            ["model"],
            multiprocess_mode="livesum",
            registry=reg,
        ),
        queue_wait=Histogram(
            "mcdrop_queue_wait_seconds",
            "Time a request waited in its model's queue before its sampling run started.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        ),
        batch_rows=Histogram(
            "mcdrop_batch_rows",
            "Folded rows (input rows x samples) of each fused sampling run.",
            ["model"],
            buckets=_BATCH_ROW_BUCKETS,
            registry=reg,
        ),
        model_ready=Gauge(
            "mcdrop_model_ready",
            "1 when the model is loaded and serving (in every live worker).",
            ["model"],
            multiprocess_mode="livemin",
            registry=reg,
        ),
        model_load_seconds=Gauge(
            "mcdrop_model_load_seconds",
            "Time the model took to load (the slowest live worker).",
            ["model"],
            multiprocess_mode="livemax",
            registry=reg,
        ),
        predictive_entropy=Histogram(
            "mcdrop_predictive_entropy",
            "Predictive entropy (nats) of each returned classification row.",
            ["model"],
            buckets=_ENTROPY_BUCKETS,
            registry=reg,
        ),
        mutual_information=Histogram(
            "mcdrop_mutual_information",
            "Mutual information (nats, epistemic) of each returned classification row.",
            ["model"],
            buckets=_ENTROPY_BUCKETS,
            registry=reg,
        ),
        regression_std=Histogram(
            "mcdrop_regression_std",
            "Predictive standard deviation of each returned regression output.",
            ["model"],
            buckets=_STD_BUCKETS,
            registry=reg,
        ),
        abstentions=Counter(
            "mcdrop_abstentions",
            "Returned rows flagged abstain: true (uncertainty above the card's threshold).",
            ["model"],
            registry=reg,
        ),
        shift_score=Histogram(
            "mcdrop_shift_score",
            "Shift score (Mahalanobis distance of the prefix features to the nearest training "
            "class) of each returned row, for models with a shift section.",
            ["model"],
            buckets=_SHIFT_BUCKETS,
            registry=reg,
        ),
        shift_flags=Counter(
            "mcdrop_shift_flags",
            "Returned rows flagged shift_flag: true (input unlike the training data).",
            ["model"],
            registry=reg,
        ),
        # Live coverage from labelled feedback (POST /v1/models/{name}/feedback): coverage over
        # a window is rate(covered) / rate(checked), the level it should reach
        # rate(nominal) / rate(checked).
        feedback=Counter(
            "mcdrop_feedback", "Labelled rows received as feedback.", ["model"], registry=reg
        ),
        interval_covered=Counter(
            "mcdrop_interval_covered",
            "Feedback rows whose target lay in the served interval or prediction set "
            "(interval: predictive, conformal, prediction_set).",
            ["model", "interval"],
            registry=reg,
        ),
        interval_checked=Counter(
            "mcdrop_interval_checked",
            "Feedback rows checked against a served interval or prediction set.",
            ["model", "interval"],
            registry=reg,
        ),
        interval_nominal=Counter(
            "mcdrop_interval_nominal",
            "Sum of the nominal levels of the checked rows' intervals or sets.",
            ["model", "interval"],
            registry=reg,
        ),
        # Log-likelihoods can be negative or positive: a histogram would drop its _sum and
        # rate() would read a falling sum as a reset, so this is a gauge; the rolling mean is
        # delta(sum[w]) / increase(mcdrop_feedback_total[w]).
        feedback_log_likelihood=Gauge(
            "mcdrop_feedback_log_likelihood_sum",
            "Sum of the log-likelihoods of the feedback targets under the served predictions "
            "(nats; regression: Gaussian with the predictive mean and variance, "
            "classification: log of the mean probability of the true class).",
            ["model"],
            multiprocess_mode="sum",
            registry=reg,
        ),
        feedback_brier=Histogram(
            "mcdrop_feedback_brier",
            "Brier score of each classification feedback row.",
            ["model"],
            buckets=_BRIER_BUCKETS,
            registry=reg,
        ),
    )
