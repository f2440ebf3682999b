"""The sampler contract: one base class every model kind implements.

A sampler turns rows into Monte Carlo dropout passes. Bundled and python-file models use
:class:`app.engine.sampler.MCSampler`, TorchScript models
:class:`app.engine.scripted.ScriptedSampler`; a new model kind (Hugging Face, say) subclasses
:class:`Sampler` and implements ``sample_jobs`` (and ``close`` if it changes the model).

The contract, which every subclass must keep (``tests/engine/sampler_contract.py`` checks it):

1. ``sample_jobs(jobs)`` returns one tensor (N_j, B_j, *output_shape) per job, in job order.
2. Row ``i`` of a job's output is pass ``job.first_sample + i``: a pure function of the job's
   inputs, its seed and that index. So a job split into rounds, [0, a) then [a, b) with
   ``first_sample=a``, returns exactly the passes of one job [0, b) (adaptive N relies on it),
   and passes at different indices are different draws.
3. The same job gives the same numbers whether it runs alone or with other jobs.
4. The model stays in eval mode outside a run; ``close`` undoes anything set at construction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from app.engine.dropout import DropoutLayer

ROW_ALIGN = 16
"""Rows per aligned block: BLAS gives a row the same bits only when the block it sits in starts
at a multiple of this and holds a multiple of it, so folded rows, chunk breaks (in samples),
mask draws and adaptive rounds all come in multiples of ``ROW_ALIGN``."""


@dataclass(frozen=True)
class SampleJob:
    """One request's share of a run: inputs (B, *input_shape), passes
    ``first_sample`` .. ``first_sample + n_samples - 1``, seed."""

    inputs: Tensor
    n_samples: int
    seed: int
    first_sample: int = 0
    prefix: tuple[Tensor, ...] | None = field(default=None, compare=False, repr=False)
    """``Sampler.prefix_of(inputs)`` kept by a caller that samples the same inputs in several
    rounds (:mod:`app.engine.streaming`), so the deterministic prefix runs once per request;
    None: the sampler computes it. A sampler without a prefix ignores it."""

    @property
    def end_sample(self) -> int:
        """One past the job's last pass index."""
        return self.first_sample + self.n_samples


class Sampler(ABC):
    """Base class of every sampler: holds the model in eval mode, its dropout layers, the row
    limit of one forward call, device and dtype. Subclasses implement ``sample_jobs`` under the
    module's contract and override ``close`` if they change the model."""

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
        self.call_bytes: int | None = None
        """Bound on one forward call's largest activation, set for dense tasks (the predictor
        of a streamed task sets ``row_calls.CALL_ACTIVATION_BYTES``); None: calls as planned.
        Samplers without a per-row activation footprint ignore it."""

    def sample(self, inputs: Tensor, n_samples: int, seed: int) -> Tensor:
        """MC outputs (N, B, *output_shape) for inputs (B, *input_shape): passes 0..N-1."""
        return self.sample_jobs([SampleJob(inputs, n_samples, seed)])[0]

    @abstractmethod
    def sample_jobs(self, jobs: Sequence[SampleJob]) -> list[Tensor]:
        """MC outputs (N_j, B_j, *output_shape) for every job: its passes
        ``first_sample`` .. ``first_sample + n_samples - 1``."""

    def close(self) -> None:
        """Undo whatever the sampler changed on the model (nothing by default)."""
        return None

    def sample_jobs_and_features(
        self, jobs: Sequence[SampleJob]
    ) -> tuple[list[Tensor], list[Tensor | None]]:
        """``sample_jobs(jobs)`` and ``features`` of each job's inputs (a sampler with a
        prefix takes them from the prefix pass it runs anyway)."""
        return self.sample_jobs(jobs), [self.features(job.inputs) for job in jobs]

    def features(self, inputs: Tensor) -> Tensor | None:
        """The deterministic activation entering the first dropout, (B, F) float64 on the CPU,
        for inputs (B, *input_shape); None when this sampler has no prefix to take it from
        (the default: TorchScript, or a model run whole on every pass)."""
        return None

    def prefix_of(self, inputs: Tensor) -> tuple[Tensor, ...] | None:
        """The deterministic prefix's output for inputs (B, *input_shape), to pass back as
        ``SampleJob.prefix`` in later rounds; None (the default) when the sampler has none."""
        return None

    def _to_device(self, inputs: Tensor) -> Tensor:
        """Float inputs in the model's dtype; integer ones (token ids) keep theirs."""
        if not inputs.is_floating_point():
            return inputs.to(self.device)
        return inputs.to(self.device, self.dtype)
