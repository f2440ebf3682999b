"""Ranking a pool file, in this process or through a server (``mcdrop rank``).

Both paths keep a bounded :class:`~app.engine.ranking.TopK` while the pool streams past.
For ``batchbald`` they keep the top BALD rows as candidates and run the joint selection on
them at the end; through a server, the last request sends those candidate rows with
``strategy: batchbald``, so the server samples them with the same seed and the same networks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from app.dataplane.policy import local_request
from app.engine.acquisition import Strategy
from app.engine.ranking import Ranking, TopK, score_rows
from app.ranking.pool import Chunk, Pool, PoolError, Rows

if TYPE_CHECKING:
    from app.client import McdropClient
    from app.registry.served import ServedModel

Progress = Callable[[int], object]
"""Called with the number of pool rows just scored."""


@dataclass(frozen=True)
class RankJob:
    """What to rank: strategy, how many picks, the MC options and the chunking."""

    strategy: Strategy
    k: int
    n_samples: int
    seed: int
    chunk_rows: int = 1024
    candidates: int | None = None
    """BatchBALD's candidate set (None: ``default_candidates(k)``)."""

    def top(self) -> TopK:
        return TopK.for_strategy(self.strategy, self.k, self.candidates)


@dataclass(frozen=True)
class Pick:
    """One chosen row: its pool index, its score and its values."""

    index: int
    score: float
    row: Rows


def inputs_of(chunk: Chunk, input_shape: Sequence[int]) -> torch.Tensor:
    """The chunk's rows reshaped to the model's input, (B, *input_shape)."""
    width = math.prod(input_shape)
    if chunk.rows.shape[1] != width:
        raise PoolError(
            f"pool rows have {chunk.rows.shape[1]} values, the model takes {width} "
            f"(input shape {list(input_shape)})"
        )
    return torch.from_numpy(chunk.rows).reshape(-1, *input_shape)


def picks_of(top: TopK, positions: list[int], scores: list[float]) -> list[Pick]:
    """Picks from positions among the kept rows (whose payload is the row values)."""
    picks = []
    for position, score in zip(positions, scores, strict=True):
        row = top.payload[position]
        assert row is not None
        picks.append(Pick(int(top.indices[position]), score, row))  # type: ignore[arg-type]
    return picks


def rank_locally(
    model: ServedModel, pool: Pool, job: RankJob, progress: Progress
) -> tuple[Ranking, list[Pick]]:
    """Score the pool chunk by chunk with this process's engine."""
    top = job.top()
    for chunk in pool.chunks(job.chunk_rows):
        inputs = inputs_of(chunk, model.card.input.shape)
        request = local_request(model, inputs, n_samples=job.n_samples, seed=job.seed)
        scored = score_rows(model.predictor, request, job.strategy)
        top.add(chunk.offset, scored, [row.copy() for row in chunk.rows])
        progress(len(chunk.rows))
    positions, scores = top.picks(job.seed)
    picks = picks_of(top, positions, scores)
    ranking = Ranking([p.index for p in picks], scores, job.strategy, job.n_samples, job.seed)
    return ranking, picks


def rank_remotely(
    client: McdropClient,
    model: str,
    input_shape: Sequence[int],
    pool: Pool,
    job: RankJob,
    progress: Progress,
) -> tuple[Ranking, list[Pick]]:
    """Score the pool chunk by chunk on a server (``job.chunk_rows`` rows per request)."""
    top = job.top()
    per_chunk: Strategy = "bald" if job.strategy == "batchbald" else job.strategy
    n_samples = job.n_samples
    for chunk in pool.chunks(job.chunk_rows):
        inputs = inputs_of(chunk, input_shape)
        answer = client.rank(
            model, inputs.tolist(), k=top.candidates, strategy=per_chunk,
            n_samples=job.n_samples, seed=job.seed,
        )  # fmt: skip
        n_samples = answer.n_samples
        chosen = torch.tensor(answer.selected, dtype=torch.long)
        rows = [chunk.rows[i].copy() for i in answer.selected]
        top.offer(
            chosen + chunk.offset, torch.tensor(answer.scores, dtype=torch.float64), payload=rows
        )
        progress(len(chunk.rows))
    positions = list(range(min(job.k, len(top.payload))))
    scores = top.scores[: job.k].tolist()
    if job.strategy == "batchbald" and top.payload:
        candidates = torch.from_numpy(np.stack(top.payload))  # type: ignore[arg-type]
        answer = client.rank(
            model, candidates.reshape(-1, *input_shape).tolist(), k=job.k,
            strategy="batchbald", n_samples=job.n_samples, seed=job.seed,
            candidates=len(top.payload),
        )  # fmt: skip
        positions, scores = answer.selected, answer.scores
    picks = picks_of(top, positions, scores)
    ranking = Ranking([p.index for p in picks], scores, job.strategy, n_samples, job.seed)
    return ranking, picks
