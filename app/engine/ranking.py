"""Ranking rows for labelling: score a pool's rows in chunks, keep a bounded top k.

A pool too large for one request is scored chunk by chunk with the same seed. mcdrop's masks
depend only on (seed, layer, sample index), so every chunk sees the same N sampled networks and
a row's scores depend on how the pool was cut only through float rounding: the layers run once
per request compute a batch of another row count, and BLAS may round a row differently by that
count (up to ~1e-5 relative in a probability; tests/engine/error_bounds.py bounds what that does
to each score). :class:`TopK` keeps the best ``k`` rows
(for ``batchbald``, the best ``candidates`` rows by BALD together with their passes, on which
the joint selection runs at the end), so memory does not grow with the pool. Two TopK of
disjoint parts of a pool merge into the TopK of the whole (what the Ray path does per block).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from app.engine.acquisition import Strategy
from app.engine.batchbald import DEFAULT_MAX_CONFIGS, batchbald
from app.engine.finite import OUTPUT_NOT_FINITE, check_passes_finite, refuse_non_finite_rows
from app.engine.predictor import Passes, PredictionRequest, Predictor
from app.tasks import Task, build_task


def default_candidates(k: int) -> int:
    """BatchBALD's candidate set by default: the top max(10 k, 100) rows by BALD."""
    return max(10 * k, 100)


@dataclass(frozen=True)
class Ranking:
    """Rows to label next, best first, with their scores (BatchBALD: the gain in joint mutual
    information as each row joined the batch)."""

    selected: list[int]
    scores: list[float]
    strategy: Strategy
    n_samples: int
    seed: int


@dataclass(frozen=True)
class ScoredRows:
    """Scores of one chunk's rows. scores: (B,); probs: (N, B, C) for batchbald, else None."""

    scores: Tensor
    probs: Tensor | None


def score_rows(predictor: Predictor, request: PredictionRequest, strategy: Strategy) -> ScoredRows:
    """The request's N passes over its inputs (B, *input_shape) and each row's acquisition
    score (build the request with ``app.dataplane.policy``; its ``seed`` fixes the passes)."""
    return score_passes(predictor.sample_passes(request), predictor.task, strategy)


def score_passes(
    passes: Passes, task: Task | str, strategy: Strategy, offset: int = 0
) -> ScoredRows:
    """Each row's acquisition score from its passes (values (N, B, ...)) by the task's rank
    scores (a task object, or its name). A row whose passes or score are not finite is refused
    as ``inputs[offset + i]`` (InvalidInputError), as predict refuses it: an overflowing row
    must never be picked first."""
    check_passes_finite(passes.values, passes.noise_variance, offset)
    scorer = build_task(task) if isinstance(task, str) else task
    scores = scorer.rank_scores(passes, strategy)
    scored = ScoredRows(scores, passes.values if strategy == "batchbald" else None)
    refuse_non_finite_rows("inputs", [scored.scores], OUTPUT_NOT_FINITE, offset)
    return scored


@dataclass
class TopK:
    """The best rows seen so far (ties: the lower pool index first)."""

    strategy: Strategy
    k: int
    candidates: int
    """Rows kept: k, or for batchbald the candidate set of the top rows by BALD."""
    indices: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    scores: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.float64))
    probs: Tensor | None = None
    """(N, kept, C) passes of the kept rows (batchbald only)."""
    payload: list[object] = field(default_factory=list)
    """Anything the caller keeps with each kept row (the CLI: the row's values)."""

    @classmethod
    def for_strategy(cls, strategy: Strategy, k: int, candidates: int | None = None) -> TopK:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if strategy != "batchbald":
            return cls(strategy, k, k)
        return cls(strategy, k, candidates if candidates is not None else default_candidates(k))

    def add(self, offset: int, rows: ScoredRows, payload: list[object] | None = None) -> None:
        """Offer a chunk whose first row has pool index ``offset``."""
        count = int(rows.scores.shape[0])
        indices = torch.arange(offset, offset + count)
        self.offer(indices, rows.scores.double(), rows.probs, payload or [None] * count)

    def merge(self, other: TopK) -> None:
        """Fold in the TopK of a disjoint part of the pool."""
        self.offer(other.indices, other.scores, other.probs, other.payload)

    def offer(
        self,
        indices: Tensor,
        scores: Tensor,
        probs: Tensor | None = None,
        payload: list[object] | None = None,
    ) -> None:
        """Offer rows by pool index (long (B,)), score ((B,) float64), passes
        ((N, B, C), batchbald) and payload."""
        payload = payload if payload is not None else [None] * int(indices.shape[0])
        all_indices = torch.cat([self.indices, indices])
        all_scores = torch.cat([self.scores, scores])
        by_index = torch.argsort(all_indices)
        by_score = torch.argsort(all_scores[by_index], descending=True, stable=True)
        order = by_index[by_score][: self.candidates]
        self.indices, self.scores = all_indices[order], all_scores[order]
        everything = self.payload + list(payload)
        self.payload = [everything[i] for i in order.tolist()]
        if probs is not None:
            joined = probs if self.probs is None else torch.cat([self.probs, probs], dim=1)
            self.probs = joined[:, order]

    def ranking(self, n_samples: int, seed: int) -> Ranking:
        """The final picks: the top k, or BatchBALD's joint choice among the candidates."""
        positions, scores = self.picks(seed)
        return self.ranking_of(positions, scores, n_samples, seed)

    def ranking_of(
        self, positions: list[int], scores: list[float], n_samples: int, seed: int
    ) -> Ranking:
        """The Ranking of picks given as positions among the kept rows."""
        return Ranking(
            [int(self.indices[i]) for i in positions], scores, self.strategy, n_samples, seed
        )

    def picks(
        self, seed: int, max_configs: int = DEFAULT_MAX_CONFIGS
    ) -> tuple[list[int], list[float]]:
        """Positions in the kept rows of the picks, best first, and their scores."""
        if self.strategy != "batchbald":
            return list(range(min(self.k, len(self.payload)))), self.scores[: self.k].tolist()
        if self.probs is None:
            return [], []
        chosen = batchbald(self.probs, self.k, seed=seed, max_configs=max_configs)
        return chosen.indices, chosen.gains


def rank(
    predictor: Predictor,
    request: PredictionRequest,
    strategy: Strategy,
    k: int,
    candidates: int | None = None,
) -> Ranking:
    """The k rows of the request's inputs (B, *input_shape) most worth labelling, in one
    request (its seed must be set: the ranking reports it)."""
    assert request.seed is not None, "a ranking request names its seed"
    top = TopK.for_strategy(strategy, k, candidates)
    top.add(0, score_rows(predictor, request, strategy))
    return top.ranking(request.n_samples, request.seed)
