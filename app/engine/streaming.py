"""Streamed prediction: a dense task's requests sampled round by round, sums folded as they go.

A request of a :class:`app.tasks.base.StreamedTask` (segmentation) never holds all its passes:
the first round is ``ROW_ALIGN`` passes (the output's size is not known before it), later rounds
as many as the task allows for the request's rows. Rounds are jobs with ``first_sample`` set,
so by the sampler contract the passes are exactly those of one run of N: the same seed gives
the same numbers whatever the round sizes and whatever else is in the batch. The sampler's
deterministic prefix (the encoder before the first sampled dropout) runs once per request, not
once per round: its output is kept and passed to every round's job. With a tolerance
(adaptive N) a request stops after the first round whose MC standard error meets it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from app.engine.sampling import ROW_ALIGN, SampleJob, Sampler

if TYPE_CHECKING:
    from app.engine.predictor import Prediction, PredictionRequest
    from app.tasks.base import StreamedTask


@dataclass
class _Stream:
    """One request's progress: passes done, its sums, kept values, and its error if any."""

    request: PredictionRequest
    seed: int
    done: int = 0
    sums: Any = None
    error: float = math.inf
    row_values: int = 0
    """Raw values of one row of one pass (known after the first round)."""
    kept: list[Tensor] = field(default_factory=list)
    prefix: tuple[Tensor, ...] | None = None
    """The sampler's prefix output for the request's rows, computed once for every round."""
    failure: Exception | None = None

    def wants_more(self) -> bool:
        tolerance = self.request.tolerance
        met = tolerance is not None and self.error <= tolerance
        return self.failure is None and self.done < self.request.n_samples and not met


def predict_streamed(
    sampler: Sampler,
    task: StreamedTask,
    requests: Sequence[PredictionRequest],
    seeds: Sequence[int],
) -> list[Prediction | Exception]:
    """Each request's prediction, or its own error, from rounds of shared forward passes.
    Raises only when a sampling run itself fails (for all of them)."""
    streams = [_Stream(r, s) for r, s in zip(requests, seeds, strict=True)]
    for stream in streams:
        stream.prefix = sampler.prefix_of(stream.request.inputs)
    pending = streams
    while pending:
        jobs = [
            SampleJob(s.request.inputs, _next_round(task, s), s.seed, s.done, s.prefix)
            for s in pending
        ]
        for stream, job, raw in zip(pending, jobs, sampler.sample_jobs(jobs), strict=True):
            _fold(task, stream, raw.float().cpu())
            stream.done += job.n_samples
        pending = [s for s in pending if s.wants_more()]
    return [_prediction(task, s) for s in streams]


def _next_round(task: StreamedTask, stream: _Stream) -> int:
    remaining = stream.request.n_samples - stream.done
    if stream.sums is None:
        return min(remaining, ROW_ALIGN)
    rows = int(stream.request.inputs.shape[0])
    return min(remaining, task.round_passes(rows, stream.row_values))


def _fold(task: StreamedTask, stream: _Stream, raw: Tensor) -> None:
    try:
        stream.sums = task.accumulate(stream.sums, raw)
        stream.row_values = math.prod(raw.shape[2:])
        if stream.request.tolerance is not None:
            stream.error = task.standard_error(stream.sums)
        if stream.request.return_samples:
            stream.kept.append(task.values(raw))
    except Exception as exc:
        stream.failure = exc


def _prediction(task: StreamedTask, stream: _Stream) -> Prediction | Exception:
    from app.engine.predictor import Prediction, check_finite

    if stream.failure is not None:
        return stream.failure
    request = stream.request
    try:
        stats = task.summary(stream.sums, request.ci_level, request.inputs)
        error = task.standard_error(stream.sums)
        samples = None
        if request.return_samples:
            samples = torch.cat(stream.kept) if len(stream.kept) > 1 else stream.kept[0]
        prediction = Prediction(
            n_samples=stream.done,
            seed=stream.seed,
            ci_level=request.ci_level,
            stats=stats,
            samples=samples,
            mc_standard_error=error,
            converged=error <= request.tolerance if request.tolerance is not None else None,
        )
        check_finite(prediction)
    except Exception as exc:
        return exc
    return prediction
