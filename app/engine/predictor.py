"""From raw MC outputs to uncertainty statistics, per task.

Classification models output logits (N, B, C), turned into probabilities per pass. Regression
models output (N, B, D) means, or (N, B, 2D) mean then log-variance with a variance head.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor

from app.engine.abstention import AbstentionRule, abstention_flags
from app.engine.sampler import SampleJob
from app.engine.stats import (
    ClassificationStats,
    RegressionStats,
    classification_stats,
    regression_stats,
)


class Sampler(Protocol):
    """What the predictor needs from a sampler (MCSampler, ScriptedSampler)."""

    def sample_jobs(self, jobs: Sequence[SampleJob]) -> list[Tensor]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class TaskSpec:
    """What the model's output means."""

    task: Literal["classification", "regression"]
    noise_variance: float | None = None
    """Fixed aleatoric variance 1/tau for regression; None with a variance head."""
    variance_head: bool = False
    abstention: AbstentionRule | None = None
    """Classification: flag rows whose uncertainty score exceeds a calibrated threshold."""


@dataclass(frozen=True)
class PredictionRequest:
    """One request for the engine: inputs (B, *input_shape) and its MC options."""

    inputs: Tensor
    n_samples: int
    ci_level: float
    seed: int | None = None
    return_samples: bool = False

    def resolved_seed(self) -> int:
        return self.seed if self.seed is not None else secrets.randbits(63)


@dataclass(frozen=True)
class Prediction:
    """Statistics for every row of one request, plus the raw passes if asked for.

    ``samples`` is (N, B, C) probabilities for classification, (N, B, D) means for regression.
    """

    n_samples: int
    seed: int
    ci_level: float
    stats: ClassificationStats | RegressionStats
    samples: Tensor | None
    abstain: Tensor | None = None
    """(B,) bool where the model has an abstention rule: True = do not trust this row."""


@dataclass(frozen=True)
class Passes:
    """Every pass of one request, for evaluation against targets.

    ``values`` is (N, B, C) probabilities for classification, (N, B, D) means for regression;
    ``noise_variance`` is regression's aleatoric variance (a float 1/tau, or (N, B, D) from a
    variance head) and None for classification.
    """

    values: Tensor
    noise_variance: float | Tensor | None
    seed: int


class Predictor:
    """Runs the sampler for one or many requests and summarises each one."""

    def __init__(self, sampler: Sampler, spec: TaskSpec) -> None:
        self.sampler = sampler
        self.spec = spec

    def predict(self, request: PredictionRequest) -> Prediction:
        """Statistics for a single request."""
        return self.predict_many([request])[0]

    def sample_passes(self, request: PredictionRequest) -> Passes:
        """Every pass of one request, unsummarised (evaluation needs them against targets)."""
        seed = request.resolved_seed()
        raw = self.sampler.sample_jobs([SampleJob(request.inputs, request.n_samples, seed)])[0]
        raw = raw.float().cpu()
        if self.spec.task == "classification":
            return Passes(torch.softmax(raw, dim=-1), None, seed)
        means, noise = self._split_regression(raw)
        return Passes(means, noise, seed)

    def predict_many(self, requests: Sequence[PredictionRequest]) -> list[Prediction]:
        """Statistics for several requests sampled in shared forward passes."""
        seeds = [request.resolved_seed() for request in requests]
        jobs = [SampleJob(r.inputs, r.n_samples, s) for r, s in zip(requests, seeds, strict=True)]
        outputs = self.sampler.sample_jobs(jobs)
        return [
            self.summarize(raw, request, seed)
            for raw, request, seed in zip(outputs, requests, seeds, strict=True)
        ]

    def summarize(self, raw: Tensor, request: PredictionRequest, seed: int) -> Prediction:
        """Prediction from raw model outputs (N, B, *output_shape) of one request."""
        raw = raw.float().cpu()
        if self.spec.task == "classification":
            probs = torch.softmax(raw, dim=-1)
            stats: ClassificationStats | RegressionStats = classification_stats(
                probs, request.ci_level
            )
            samples = probs
        else:
            means, noise = self._split_regression(raw)
            stats = regression_stats(means, noise, request.ci_level)
            samples = means
        return Prediction(
            n_samples=request.n_samples,
            seed=seed,
            ci_level=request.ci_level,
            stats=stats,
            samples=samples if request.return_samples else None,
            abstain=abstention_flags(stats, self.spec.abstention),
        )

    def _split_regression(self, raw: Tensor) -> tuple[Tensor, float | Tensor]:
        if not self.spec.variance_head:
            assert self.spec.noise_variance is not None
            return raw, self.spec.noise_variance
        d = raw.shape[-1] // 2
        return raw[..., :d], torch.exp(raw[..., d:])
