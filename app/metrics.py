"""Every Prometheus metric mcdrop exports, declared once.

Labels stay few (model, endpoint, outcome). Each app builds its own registry, so tests and
several apps in one process do not share counters.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SAMPLE_BUCKETS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
_ENTROPY_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0)
_STD_BUCKETS = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0)


@dataclass(frozen=True)
class Metrics:
    """The metric objects of one app and the registry they live in."""

    registry: CollectorRegistry
    requests: Counter
    request_duration: Histogram
    samples_per_request: Histogram
    rows_per_request: Histogram
    inflight_requests: Gauge
    model_ready: Gauge
    model_load_seconds: Gauge
    predictive_entropy: Histogram
    mutual_information: Histogram
    regression_std: Histogram
    abstentions: Counter

    def render(self) -> tuple[bytes, str]:
        """Exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def build_metrics(registry: CollectorRegistry | None = None) -> Metrics:
    """Declare every metric in ``registry`` (a fresh one by default)."""
    reg = registry if registry is not None else CollectorRegistry()
    return Metrics(
        registry=reg,
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
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=reg,
        ),
        inflight_requests=Gauge(
            "mcdrop_inflight_requests",
            "Prediction requests being processed now.",
            ["model"],
            registry=reg,
        ),
        model_ready=Gauge(
            "mcdrop_model_ready", "1 when the model is loaded and serving.", ["model"], registry=reg
        ),
        model_load_seconds=Gauge(
            "mcdrop_model_load_seconds", "Time the model took to load.", ["model"], registry=reg
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
    )
