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
from torch import Tensor, nn

from app.engine.dropout import DropoutLayer
from app.engine.masks import MASK_BLOCK, stream_seed
from app.engine.sampler import SampleJob

_GLOBAL_RNG_LOCK = threading.Lock()


class ScriptedSampler:
    """MC sampler for a ``torch.jit.ScriptModule`` (same interface as ``MCSampler``)."""

    def __init__(
        self,
        model: nn.Module,
        dropout_layers: Sequence[DropoutLayer],
        *,
        max_rows: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.model = model.eval()
        self.dropout_layers = list(dropout_layers)
        self.max_rows = max_rows
        self.device = torch.device(device)
        self.dtype = dtype

    def close(self) -> None:
        """Nothing to undo: dropout is only switched on inside a run."""

    def sample(self, inputs: Tensor, n_samples: int, seed: int) -> Tensor:
        """MC outputs (N, B, *output_shape) for inputs (B, *input_shape)."""
        return self.sample_jobs([SampleJob(inputs, n_samples, seed)])[0]

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
