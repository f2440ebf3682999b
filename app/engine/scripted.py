"""Sampling TorchScript models, which cannot take Python forward hooks.

Their dropout submodules are switched to training mode for the run (nothing else is), and the
global RNG is seeded per block of ``MASK_BLOCK`` samples, so a request's numbers depend only on
its seed, N, its rows and ``max_rows``. Unlike :class:`app.engine.sampler.MCSampler`, masks are
drawn per row, so they are not independent of the other rows of the request.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
from torch import Tensor

from app.engine.masks import MASK_BLOCK, stream_seed
from app.engine.sampler import BaseSampler, SampleJob

_GLOBAL_RNG_LOCK = threading.Lock()


class ScriptedSampler(BaseSampler):
    """MC sampler for a ``torch.jit.ScriptModule``; dropout is only switched on inside a run,
    so ``close`` has nothing to undo."""

    def sample_jobs(self, jobs: Sequence[SampleJob]) -> list[Tensor]:
        """MC outputs (N_j, B_j, *output_shape) for every job, one job at a time."""
        with _GLOBAL_RNG_LOCK, torch.inference_mode(), torch.random.fork_rng(devices=[]):
            self._set_dropout(True)
            try:
                return [self._sample_job(job) for job in jobs]
            finally:
                self._set_dropout(False)

    def _sample_job(self, job: SampleJob) -> Tensor:
        x = job.inputs.to(self.device, self.dtype)
        rows = int(x.shape[0])
        per_chunk = max(1, self.max_rows // rows)
        parts = []
        for block_start in range(0, job.n_samples, MASK_BLOCK):
            torch.manual_seed(stream_seed(job.seed, block_start // MASK_BLOCK))
            block_end = min(block_start + MASK_BLOCK, job.n_samples)
            for t0 in range(block_start, block_end, per_chunk):
                n = min(per_chunk, block_end - t0)
                folded = x.repeat((n,) + (1,) * (x.dim() - 1))
                out = self.model(folded)
                parts.append(out.view(n, rows, *out.shape[1:]))
        return torch.cat(parts)

    def _set_dropout(self, active: bool) -> None:
        for layer in self.dropout_layers:
            layer.module.train(active)
