"""Ranking a pool on Ray (``mcdrop rank --ray [ADDRESS]``; needs ``pip install 'mcdrop[ray]'``).

The driver reads the pool in chunks and puts each one in Ray's object store, its pool indices
in the first column. Ray Data's ``map_batches`` hands every chunk to a pool of actors; each actor
loads the model folder once (the folder must be readable at the same path on every node) and
runs mcdrop's engine, returning only the chunk's top rows (for ``batchbald``: its top BALD rows
with their passes). The driver merges those into one :class:`~app.engine.ranking.TopK`, so the
same seed gives the same picks as ``rank_locally``.

ADDRESS: none starts Ray in this process (or uses the one already started); ``auto`` joins the
cluster of this machine (``ray start --head`` beforehand); ``ray://HOST:10001`` joins a remote
cluster through Ray Client.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.dataplane.policy import local_request
from app.engine.ranking import Ranking, score_rows
from app.ranking.pool import Chunk, Pool
from app.ranking.runner import Pick, Progress, RankJob, inputs_of, picks_of

Batch = dict[str, np.ndarray[Any, Any]]


class BlockRanker:
    """A Ray actor: the model loaded once, then one pool chunk per call -> its top rows."""

    def __init__(self, folder: str, input_shape: Sequence[int], job: RankJob) -> None:
        from app.registry.loading import load_model_folder

        torch.set_num_threads(1)
        self.model = load_model_folder(Path(folder))
        self.input_shape = list(input_shape)
        self.job = job

    def __call__(self, batch: Batch) -> Batch:
        data = batch["data"]
        chunk = Chunk(0, np.ascontiguousarray(data[:, 1:], dtype=np.float32))
        job = self.job
        inputs = inputs_of(chunk, self.input_shape)
        request = local_request(self.model, inputs, n_samples=job.n_samples, seed=job.seed)
        scored = score_rows(self.model.predictor, request, job.strategy)
        top = job.top()
        top.offer(torch.from_numpy(data[:, 0].astype(np.int64)), scored.scores.double(),
                  scored.probs, payload=list(range(len(chunk.rows))))  # fmt: skip
        kept = np.asarray(top.payload, dtype=np.int64)
        out: Batch = {
            "index": top.indices.numpy(),
            "score": top.scores.numpy(),
            "row": chunk.rows[kept],
        }
        if top.probs is not None:
            out["probs"] = top.probs.permute(1, 0, 2).contiguous().numpy()
        return out


def _connect(address: str) -> Any:
    import ray

    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, log_to_driver=False)
    return ray


def rank_with_ray(
    folder: Path,
    input_shape: Sequence[int],
    pool: Pool,
    job: RankJob,
    address: str,
    actors: int,
    progress: Progress,
) -> tuple[Ranking, list[Pick]]:
    """Score the pool with ``actors`` model actors under Ray Data and merge their top rows."""
    ray = _connect(address)
    refs = []
    for chunk in pool.chunks(job.chunk_rows):
        index = np.arange(chunk.offset, chunk.offset + len(chunk.rows), dtype=np.float64)
        refs.append(ray.put(np.column_stack([index, chunk.rows.astype(np.float64)])))
        progress(len(chunk.rows))
    dataset = ray.data.from_numpy_refs(refs).map_batches(
        BlockRanker,
        fn_constructor_kwargs={
            "folder": str(folder.resolve()), "input_shape": list(input_shape), "job": job,
        },
        batch_size=None,
        batch_format="numpy",
        concurrency=actors,
        num_cpus=1,
    )  # fmt: skip
    top = job.top()
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        probs = batch.get("probs")
        top.offer(
            torch.from_numpy(np.array(batch["index"], dtype=np.int64)),
            torch.from_numpy(np.array(batch["score"], dtype=np.float64)),
            torch.from_numpy(np.array(probs)).permute(1, 0, 2) if probs is not None else None,
            payload=[np.asarray(row, dtype=np.float32) for row in batch["row"]],
        )
    positions, scores = top.picks(job.seed)
    picks = picks_of(top, positions, scores)
    ranking = Ranking([p.index for p in picks], scores, job.strategy, job.n_samples, job.seed)
    return ranking, picks
