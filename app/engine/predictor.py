"""From raw MC outputs to uncertainty statistics, per task.

Classification models output logits (N, B, C), turned into probabilities per pass. Regression
models output (N, B, D) means, or (N, B, 2D) mean then log-variance with a variance head.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from app.engine.abstention import AbstentionRule
from app.engine.adaptive import ADAPTIVE_FIRST_SAMPLES, mc_standard_error, next_sample_count
from app.engine.conformal import ConformalOutput, ConformalRule
from app.engine.finite import OUTPUT_NOT_FINITE, refuse_non_finite_rows
from app.engine.row_calls import CALL_ACTIVATION_BYTES
from app.engine.sampling import SampleJob, Sampler
from app.engine.shift import ShiftOutput, ShiftRule, apply_shift, shift_features
from app.engine.streaming import predict_streamed

if TYPE_CHECKING:
    from app.tasks import Task

_SEEDS: tuple[int, random.Random] = (os.getpid(), random.Random())


def fresh_seed() -> int:
    """A random 63-bit seed for a request that gave none. A per-process generator seeded from
    the OS (re-seeded in a forked worker), not one ``os.urandom`` system call per request:
    seeds pick mask streams, they guard nothing."""
    global _SEEDS
    pid, generator = _SEEDS
    if pid != os.getpid():
        _SEEDS = pid, generator = os.getpid(), random.Random()
    return generator.getrandbits(63)


@dataclass(frozen=True)
class TaskSpec:
    """What the model's output means: the task's name and the card's options for it."""

    task: Literal[
        "classification", "regression", "multilabel", "token_classification", "segmentation"
    ]
    noise_variance: float | None = None
    """Fixed aleatoric variance 1/tau for regression; None with a variance head."""
    variance_head: bool = False
    abstention: AbstentionRule | None = None
    """Classification: flag rows whose uncertainty score exceeds a calibrated threshold."""
    conformal: ConformalRule | None = None
    """Split-conformal band (regression) or prediction sets (classification)."""
    shift: ShiftRule | None = None
    """Classification: the distribution-shift detector (``shift_score``, ``shift_flag``)."""
    threshold: float = 0.5
    """Multi-label: a label is predicted where its mean probability is >= this."""
    uncertainty_threshold: float = 0.1
    """Segmentation: a pixel is uncertain where its mutual information exceeds this (nats)."""


@dataclass(frozen=True)
class PredictionRequest:
    """One request for the engine: inputs (B, *input_shape) and its MC options."""

    inputs: Tensor
    n_samples: int
    ci_level: float
    seed: int | None = None
    return_samples: bool = False
    tolerance: float | None = None
    """Adaptive N: sample until the MC standard error of the mean is at most this, with
    ``n_samples`` as the cap. None: exactly ``n_samples`` passes."""

    def resolved_seed(self) -> int:
        return self.seed if self.seed is not None else fresh_seed()

    @property
    def first_round(self) -> int:
        """Samples drawn in the first (possibly fused) round."""
        if self.tolerance is None:
            return self.n_samples
        return min(self.n_samples, ADAPTIVE_FIRST_SAMPLES)

    @property
    def folded_rows(self) -> int:
        """Rows this request adds to a fused forward pass in its first round."""
        return int(self.inputs.shape[0]) * self.first_round


@dataclass(frozen=True)
class Prediction:
    """Statistics for every row of one request, plus the raw passes if asked for.

    ``samples`` holds the task's per-pass values: (N, B, C) probabilities for classification,
    (N, B, D) means for regression, (N, B, L, C) per-token probabilities for tokens.
    """

    n_samples: int
    seed: int
    ci_level: float
    stats: Any
    """The task's statistics (``ClassificationStats``, ``RegressionStats``, ...), a dataclass
    of (B, ...) tensors."""
    samples: Tensor | None
    mc_standard_error: float
    """Largest MC standard error of the returned mean (over rows and outputs)."""
    converged: bool | None = None
    """Adaptive N only: whether the tolerance was met before the cap."""
    abstain: Tensor | None = None
    """(B,) bool where the model has an abstention rule: True = do not trust this row."""
    conformal: ConformalOutput | None = None
    """Where the model has a conformal rule: its band or prediction sets."""
    shift: ShiftOutput | None = None
    """Where the model has a shift rule: each row's shift score and flag (in ``abstain``)."""


@dataclass(frozen=True)
class Passes:
    """Every pass of one request, for evaluation against targets.

    ``values`` are the task's per-pass values ((N, B, C) probabilities for classification,
    (N, B, D) means for regression); ``noise_variance`` is regression's aleatoric variance (a
    float 1/tau, or (N, B, D) from a variance head) and None for the other tasks.
    """

    values: Tensor
    noise_variance: float | Tensor | None
    seed: int


class Predictor:
    """Runs the sampler for one or many requests and summarises each one."""

    def __init__(self, sampler: Sampler, spec: TaskSpec) -> None:
        # Imported here: app.tasks imports the evaluation package, which imports this module.
        from app.tasks import TaskOptions, build_task
        from app.tasks.base import StreamedTask

        self.sampler = sampler
        self.spec = spec
        options = TaskOptions(
            spec.noise_variance, spec.variance_head, spec.threshold, spec.uncertainty_threshold
        )
        self.task: Task = build_task(spec.task, options)
        self._streamed = self.task if isinstance(self.task, StreamedTask) else None
        """The task, where it is summed round by round (memory flat in N); else None."""
        if self._streamed is not None:  # dense maps: forward calls sized by their activations
            sampler.call_bytes = CALL_ACTIVATION_BYTES

    def predict(self, request: PredictionRequest) -> Prediction:
        """Statistics for a single request."""
        return self.predict_many([request])[0]

    def sample_passes(self, request: PredictionRequest) -> Passes:
        """Every pass of one request, unsummarised (evaluation needs them against targets)."""
        seed = request.resolved_seed()
        return self.passes_of(self.sample_raw(request.inputs, request.n_samples, seed), seed)

    def sample_raw(
        self, inputs: Tensor, n_samples: int, seed: int, first_sample: int = 0
    ) -> Tensor:
        """Raw outputs (n_samples, B, *output_shape), float32 on the CPU, of passes
        ``first_sample``.. of ``seed``: the same bits whatever rows are sampled alongside."""
        job = SampleJob(inputs, n_samples, seed, first_sample=first_sample)
        return self.sampler.sample_jobs([job])[0].float().cpu()

    def passes_of(self, raw: Tensor, seed: int) -> Passes:
        """The passes of raw outputs (N, B, *output_shape) sampled with ``seed``."""
        return Passes(self.task.values(raw), self.task.noise(raw), seed)

    def predict_many(self, requests: Sequence[PredictionRequest]) -> list[Prediction]:
        """Statistics for several requests sampled in shared forward passes (the first
        request's error is raised if any request fails)."""
        outcomes = self.predict_each(requests)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        return [outcome for outcome in outcomes if isinstance(outcome, Prediction)]

    def predict_each(self, requests: Sequence[PredictionRequest]) -> list[Prediction | Exception]:
        """Each request's prediction, or the error of that request alone, from shared
        forward passes. Raises only when the sampling run itself fails (for all of them)."""
        seeds = [request.resolved_seed() for request in requests]
        if self._streamed is not None:
            streamed = predict_streamed(self.sampler, self._streamed, requests, seeds)
            return [self._with_abstain(outcome) for outcome in streamed]
        jobs = [SampleJob(r.inputs, r.first_round, s) for r, s in zip(requests, seeds, strict=True)]
        features: list[Tensor | None] = [None] * len(jobs)
        if self.spec.shift is not None and self.spec.shift.source == "prefix":
            sampled, features = self.sampler.sample_jobs_and_features(jobs)
        else:
            sampled = self.sampler.sample_jobs(jobs)
        outputs = [raw.float().cpu() for raw in sampled]
        self._sample_until_converged(requests, seeds, outputs)
        # Statistics run per request: reductions over a tensor holding other requests' rows
        # could round differently, a request's numbers must not depend on its neighbours, and
        # one request's failure must not reach the others.
        return [
            self._summarize_alone(raw, request, seed, feature)
            for raw, request, seed, feature in zip(outputs, requests, seeds, features, strict=True)
        ]

    def _summarize_alone(
        self, raw: Tensor, request: PredictionRequest, seed: int, features: Tensor | None
    ) -> Prediction | Exception:
        try:
            prediction = self.summarize(raw, request, seed, features)
            check_finite(prediction)
        except Exception as exc:
            return exc
        return prediction

    def _sample_until_converged(
        self, requests: Sequence[PredictionRequest], seeds: list[int], outputs: list[Tensor]
    ) -> None:
        """Grow the outputs of adaptive requests, round by round, until each one is done."""
        pending = [i for i, request in enumerate(requests) if request.tolerance is not None]
        while pending:
            more: list[tuple[int, SampleJob]] = []
            for i in pending:
                request, n = requests[i], outputs[i].shape[0]
                assert request.tolerance is not None
                # A request whose values are not finite stops here; its summary refuses it.
                error = mc_standard_error(self.returned_values(outputs[i]))
                if not math.isfinite(error):
                    continue
                target = next_sample_count(n, error, request.tolerance, request.n_samples)
                if target > n:
                    more.append(
                        (i, SampleJob(request.inputs, target - n, seeds[i], first_sample=n))
                    )
            extra = self.sampler.sample_jobs([job for _, job in more]) if more else []
            for (i, _), raw in zip(more, extra, strict=True):
                outputs[i] = torch.cat([outputs[i], raw.float().cpu()])
            pending = [i for i, _ in more]

    def returned_values(self, raw: Tensor) -> Tensor:
        """Per-pass values whose mean is returned: probabilities, or regression means."""
        return self.task.values(raw)

    def summarize(
        self, raw: Tensor, request: PredictionRequest, seed: int, features: Tensor | None = None
    ) -> Prediction:
        """Prediction from raw model outputs (N, B, *output_shape) of one request (``features``:
        its prefix features (B, F) for the shift score, if the sampling run kept them)."""
        raw = raw.float().cpu()
        values = self.returned_values(raw)
        stats = self.task.statistics(raw, values, request.ci_level, request.inputs)
        return self._prediction(request, seed, stats, values, features)

    def _prediction(
        self,
        request: PredictionRequest,
        seed: int,
        stats: Any,
        values: Tensor,
        features: Tensor | None = None,
    ) -> Prediction:
        error = mc_standard_error(values)
        converged = None
        if request.tolerance is not None:
            converged = error <= request.tolerance
        shift = self.shift_of(request.inputs, features)
        abstain = self.task.abstain(stats, self.spec.abstention)
        if shift is not None:
            abstain = shift.flag if abstain is None else abstain | shift.flag
        return Prediction(
            n_samples=int(values.shape[0]),
            seed=seed,
            ci_level=request.ci_level,
            stats=stats,
            samples=values if request.return_samples else None,
            mc_standard_error=error,
            converged=converged,
            abstain=abstain,
            conformal=self.task.conformal(stats, self.spec.conformal, seed),
            shift=shift,
        )

    def _with_abstain(self, outcome: Prediction | Exception) -> Prediction | Exception:
        """A streamed prediction with the card's abstention flags (its statistics are whole
        only once every round is folded in)."""
        if isinstance(outcome, Exception) or self.spec.abstention is None:
            return outcome
        return replace(outcome, abstain=self.task.abstain(outcome.stats, self.spec.abstention))

    def shift_of(self, inputs: Tensor, features: Tensor | None = None) -> ShiftOutput | None:
        """The shift score and flag of one request's rows (B, ...), where the model has a shift
        rule: from ``features`` (B, F) of the request's own prefix pass, or a prefix pass run
        now, so a fused neighbour cannot change it."""
        rule = self.spec.shift
        if rule is None:
            return None
        if features is None:
            features = shift_features(self.sampler, rule.source, inputs)
        if features is None:
            raise RuntimeError("the shift rule needs prefix features this sampler lacks")
        return apply_shift(rule, features, inputs)


def check_finite(prediction: Prediction) -> None:
    """Refuse a prediction with a non-finite statistic (or sample), naming the first input row
    it comes from: an overflow inside the model is the input's problem, never a 200 with
    nulls."""
    tensors = [getattr(prediction.stats, f.name) for f in dataclasses.fields(prediction.stats)]
    if prediction.samples is not None:
        tensors.append(prediction.samples.transpose(0, 1))
    refuse_non_finite_rows("inputs", tensors, OUTPUT_NOT_FINITE)
