"""Sampling TorchScript models, which cannot take Python forward hooks.

Their dropout submodules are switched to training mode for the run (nothing else is) and draw
from the global RNG, whose use inside one forward call depends on the call's size (on CPUs
where torch's Bernoulli kernel is serial, a second dropout layer's draws start after the first
layer's). So passes are computed in fixed cells: cell ``k`` holds passes
``k * S .. (k + 1) * S - 1`` for ``S = cell_samples(rows)``, runs as one forward call seeded
with ``(seed, k)``, and is always computed whole, even when a job needs only part of it. A
pass is then a pure function of (seed, pass index, rows, ``max_rows``), as the sampler
contract asks (adaptive rounds continue a run exactly); the price is at most one cell's rows
computed and dropped at each end of a job. Unlike
:class:`app.engine.sampler.MCSampler`, masks are drawn per row, so they are not independent of
the other rows of the request.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
from torch import Tensor

from app.engine.masks import stream_seed
from app.engine.sampling import ROW_ALIGN, SampleJob, Sampler

CELL_ROWS = 1024
"""Folded rows of one cell (one seeded forward call) for jobs of up to 64 rows; wider jobs get
``ROW_ALIGN`` passes a cell (within ``max_rows``): few calls for long runs, little waste for
short ones."""

GLOBAL_RNG_LOCK = threading.Lock()


class ScriptedSampler(Sampler):
    """MC sampler for a ``torch.jit.ScriptModule``; dropout is only switched on inside a run,
    so ``close`` has nothing to undo."""

    def sample_jobs(self, jobs: Sequence[SampleJob]) -> list[Tensor]:
        """MC outputs (N_j, B_j, *output_shape) for every job, one job at a time."""
        with GLOBAL_RNG_LOCK, torch.inference_mode(), torch.random.fork_rng(devices=[]):
            self._set_dropout(True)
            try:
                return [self._sample_job(job) for job in jobs]
            finally:
                self._set_dropout(False)

    def cell_samples(self, rows: int) -> int:
        """Passes per cell for a job of ``rows`` rows: as many as fit in ``CELL_ROWS``, but at
        least ``ROW_ALIGN`` (few calls for wide jobs) and no more than fit in ``max_rows``,
        rounded down to a multiple of ``ROW_ALIGN`` (or what fits, at least 1, if fewer)."""
        fit = self.max_rows // rows
        if fit < ROW_ALIGN:
            return max(1, fit)
        return min(max(CELL_ROWS // rows, ROW_ALIGN), fit) // ROW_ALIGN * ROW_ALIGN

    def _sample_job(self, job: SampleJob) -> Tensor:
        x = self._to_device(job.inputs)
        size = self.cell_samples(int(x.shape[0]))
        first, last = job.first_sample // size, (job.end_sample - 1) // size
        cells = [self._cell(x, job.seed, k, size) for k in range(first, last + 1)]
        out = cells[0] if len(cells) == 1 else torch.cat(cells)
        start = job.first_sample - first * size
        return out[start : start + job.n_samples]

    def _cell(self, x: Tensor, seed: int, cell: int, size: int) -> Tensor:
        """Passes cell * size .. (cell + 1) * size - 1: (size, B, *output_shape)."""
        torch.manual_seed(stream_seed(seed, cell))
        out: Tensor = self.model(x.repeat((size,) + (1,) * (x.dim() - 1)))
        return out.view(size, x.shape[0], *out.shape[1:])

    def _set_dropout(self, active: bool) -> None:
        for layer in self.dropout_layers:
            layer.module.train(active)
