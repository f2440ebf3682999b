"""A rank request as steps on the inference thread: score the rows in chunks, keep the best.

Each step samples at most ``max_batch_rows`` folded rows and offers their scores to a bounded
:class:`~app.engine.ranking.TopK`; the last step picks (BatchBALD: the joint selection among
the candidates). Chunks sampled with the request's seed give the same bits as the whole request,
so ``bald`` scores are exactly predict's ``mutual_information`` for the same rows and seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from app.config import Settings
from app.dataplane.evaluation import StepRunner
from app.engine.acquisition import Strategy
from app.engine.batchbald import GreedySelection, selection_work
from app.engine.predictor import PredictionRequest, Predictor
from app.engine.ranking import Ranking, TopK, default_candidates, score_passes
from app.errors import InvalidInputError
from app.registry.served import ServedModel


@dataclass(frozen=True)
class RankQuery:
    """What a rank request asks for, beyond the MC options."""

    k: int
    strategy: Strategy
    candidates: int | None = None
    """batchbald only: choose among this many top rows by BALD (default max(10 k, 100))."""


@dataclass(frozen=True)
class RankingJob:
    """One checked rank request."""

    predictor: Predictor
    request: PredictionRequest
    query: RankQuery

    @classmethod
    def of(
        cls, model: ServedModel, request: PredictionRequest, query: RankQuery, settings: Settings
    ) -> RankingJob:
        """Check the strategy against the model's task, the candidate set against its bound
        and BatchBALD's selection work against ``max_rank_selection_work`` (422 naming the
        field)."""
        max_candidates = settings.max_rank_candidates
        task, allowed = model.task.name, model.task.strategies
        if query.strategy not in allowed:
            use = f"use {', '.join(allowed)}" if allowed else "it cannot be ranked"
            raise InvalidInputError(
                "strategy", f"{query.strategy} does not apply to a {task} model ({use})"
            )
        if query.candidates is not None and query.strategy != "batchbald":
            raise InvalidInputError("candidates", "only applies with strategy batchbald")
        candidates = query.candidates or default_candidates(query.k)
        if query.strategy == "batchbald" and candidates > max_candidates:
            raise InvalidInputError(
                "candidates", f"{candidates} exceeds the limit of {max_candidates}"
            )
        if candidates < query.k:
            raise InvalidInputError("candidates", f"must be at least k ({query.k})")
        if query.strategy == "batchbald":
            _check_selection_work(query.k, request.n_samples, candidates, model, settings)
        return cls(model.predictor, request, query)

    async def run(self, step: StepRunner, max_folded_rows: int) -> Ranking:
        """Score chunk by chunk (one short step each), then pick."""
        request, query = self.request, self.query
        seed = request.resolved_seed()
        top = TopK.for_strategy(query.strategy, query.k, query.candidates)
        chunk = max(1, max_folded_rows // request.n_samples)
        for start in range(0, int(request.inputs.shape[0]), chunk):
            rows = request.inputs[start : start + chunk]
            await step(self._score_chunk, top, start, rows, seed)
        if top.probs is None:  # not batchbald: the top k are the picks
            ranking: Ranking = await step(top.ranking, request.n_samples, seed)
            return ranking
        # BatchBALD picks one row per step: the deadline, a gone client or shutdown stop it
        # between picks, and other requests run between them.
        greedy = GreedySelection(top.probs, query.k, seed)
        while not greedy.done:
            await step(greedy.pick)
        return top.ranking_of(greedy.indices, greedy.gains, request.n_samples, seed)

    def _score_chunk(self, top: TopK, offset: int, rows: Tensor, seed: int) -> None:
        predictor = self.predictor
        raw = predictor.sample_raw(rows, self.request.n_samples, seed)
        scored = score_passes(
            predictor.passes_of(raw, seed), predictor.task, self.query.strategy, offset
        )
        top.add(offset, scored)


def _check_selection_work(
    k: int, n_samples: int, candidates: int, model: ServedModel, settings: Settings
) -> None:
    n_classes = math.prod(model.output_shape)
    work = selection_work(k, n_samples, candidates, n_classes)
    limit = settings.max_rank_selection_work
    if work > limit:
        raise InvalidInputError(
            "k",
            f"BatchBALD's selection of k={k} among {candidates} candidates at n_samples="
            f"{n_samples} ({n_classes} classes) takes about {work:.3g} multiply-adds, more than "
            f"the limit of {limit:.3g} (max_rank_selection_work): ask for fewer rows, "
            "candidates or samples",
        )
