"""An evaluation as steps on the inference thread: sample the rows in chunks, then score.

Each step is short (a block of passes of about ``max_batch_rows`` folded rows, at least
``ROW_ALIGN`` passes), so predictions interleave with a long evaluation and a cancelled or late
one stops at the next step. Masks depend on the seed and the pass index, and blocks of a multiple
of ``ROW_ALIGN`` passes keep BLAS's bits, so the steps give exactly the answer of one run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import torch
from torch import Tensor

from app.engine.abstention import RankingScore
from app.engine.adaptive import mc_standard_error, next_sample_count
from app.engine.evaluation.runner import Evaluation, score
from app.engine.predictor import PredictionRequest, Predictor
from app.engine.sampling import ROW_ALIGN
from app.registry.served import ServedModel

T = TypeVar("T")


class StepRunner(Protocol):
    """Runs one function on the inference thread within an admitted job's deadline."""

    def __call__(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]: ...


@dataclass(frozen=True)
class EvaluationJob:
    """One checked evaluation request: what to sample and what to score it against."""

    predictor: Predictor
    request: PredictionRequest
    targets: Tensor
    coverages: Sequence[float]
    ranking_score: RankingScore

    @classmethod
    def of(
        cls,
        model: ServedModel,
        request: PredictionRequest,
        targets: Tensor,
        coverages: Sequence[float],
        ranking_score: RankingScore,
    ) -> EvaluationJob:
        """The job of checked rows and targets (from ``RequestPolicy.targets``)."""
        return cls(model.predictor, request, targets, coverages, ranking_score)

    async def run(self, step: StepRunner, max_folded_rows: int) -> Evaluation:
        """Sample (adaptively with ``"auto"``) and score, one short step at a time."""
        request, predictor = self.request, self.predictor
        seed = request.resolved_seed()
        raw = await self._sample(step, seed, 0, request.first_round, max_folded_rows)
        while request.tolerance is not None:
            n = int(raw.shape[0])
            error = await step(self._standard_error, raw)
            target = next_sample_count(n, error, request.tolerance, request.n_samples)
            if target <= n:
                break
            more = await self._sample(step, seed, n, target - n, max_folded_rows)
            raw = torch.cat([raw, more])
        passes = predictor.passes_of(raw, seed)
        return await step(
            score,
            passes,
            self.targets,
            request.ci_level,
            self.coverages,
            self.ranking_score,
            predictor.spec.conformal,
            predictor.task,
        )

    async def _sample(
        self, step: StepRunner, seed: int, first: int, count: int, max_folded_rows: int
    ) -> Tensor:
        """Raw passes first..first+count-1 of every row, (count, B, ...), a block of passes
        per step: blocks of a multiple of ``ROW_ALIGN`` passes keep the bits of one run."""
        inputs = self.request.inputs
        block = max(1, max_folded_rows // int(inputs.shape[0])) // ROW_ALIGN * ROW_ALIGN
        block = max(block, ROW_ALIGN)
        parts = [
            await step(self.predictor.sample_raw, inputs, min(block, first + count - t), seed, t)
            for t in range(first, first + count, block)
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _standard_error(self, raw: Tensor) -> float:
        return mc_standard_error(self.predictor.returned_values(raw))
