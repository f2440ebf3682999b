"""The MC sampler: N stochastic passes for many rows in few forward calls.

Samples are folded into the batch dimension (sample-major: row ``t * B + b`` is sample ``t`` of
input row ``b``) and pushed through the model in chunks of at most ``max_rows`` rows. Several
jobs (requests) can share one run; each keeps its own seed and gets bit-identical numbers whether
it runs alone or fused with others. The part of the model before the first dropout (the
deterministic prefix, see :mod:`app.engine.prefix`) runs once per input row, not once per sample.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from app.engine.dropout import DropoutLayer, apply_mask, mask_shape
from app.engine.masks import MASK_BLOCK, MaskSource, stream_seed
from app.engine.prefix import ModelSplit, whole_model_split


@dataclass(frozen=True)
class SampleJob:
    """One request's share of a sampling run: inputs (B, *input_shape), N passes, a seed."""

    inputs: Tensor
    n_samples: int
    seed: int


@dataclass(frozen=True)
class _Piece:
    """Samples t0..t1-1 of one job, placed inside one forward chunk."""

    job: int
    t0: int
    t1: int
    rows: int

    @property
    def folded_rows(self) -> int:
        return (self.t1 - self.t0) * self.rows


@dataclass
class _RunContext:
    pieces: list[_Piece]
    masks: list[MaskSource]
    sizes: list[int] = field(default_factory=list)


def plan_chunks(jobs: Sequence[SampleJob], max_rows: int) -> list[list[_Piece]]:
    """Pack every job's samples into chunks of at most ``max_rows`` folded rows.

    A chunk holds at least one sample, so a single job wider than ``max_rows`` still runs.
    """
    chunks: list[list[_Piece]] = []
    current: list[_Piece] = []
    used = 0
    for index, job in enumerate(jobs):
        rows = int(job.inputs.shape[0])
        t = 0
        while t < job.n_samples:
            fit = (max_rows - used) // rows
            if fit <= 0 and current:
                chunks.append(current)
                current, used = [], 0
                continue
            take = min(max(fit, 1), job.n_samples - t)
            current.append(_Piece(index, t, t + take, rows))
            used += take * rows
            t += take
    if current:
        chunks.append(current)
    return chunks


class MCSampler:
    """Runs MC dropout passes for a model kept in eval mode.

    Dropout modules get forward hooks that apply seeded masks while a run is active (and do
    nothing otherwise), so BatchNorm and every other layer keep their eval behaviour.
    """

    def __init__(
        self,
        model: nn.Module,
        dropout_layers: Sequence[DropoutLayer],
        *,
        max_rows: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        split: ModelSplit | None = None,
    ) -> None:
        self.model = model.eval()
        self.dropout_layers = list(dropout_layers)
        self.max_rows = max_rows
        self.device = torch.device(device)
        self.dtype = dtype
        self.split = split if split is not None else whole_model_split(model)
        self._local = threading.local()
        self._handles: list[RemovableHandle] = [
            layer.module.register_forward_hook(self._make_hook(layer))
            for layer in self.dropout_layers
        ]

    def close(self) -> None:
        """Remove the dropout hooks (the model then behaves as a plain eval model)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def sample(self, inputs: Tensor, n_samples: int, seed: int) -> Tensor:
        """MC outputs (N, B, *output_shape) for inputs (B, *input_shape)."""
        return self.sample_jobs([SampleJob(inputs, n_samples, seed)])[0]

    def sample_jobs(self, jobs: Sequence[SampleJob]) -> list[Tensor]:
        """MC outputs (N_j, B_j, *output_shape) for every job, sharing forward passes."""
        with torch.inference_mode():
            prefix_outputs = self._run_prefix(jobs)
            outputs: list[list[Tensor]] = [[] for _ in jobs]
            masks = [MaskSource(job.seed, self.device) for job in jobs]
            for pieces in plan_chunks(jobs, self.max_rows):
                folded = self._fold(pieces, prefix_outputs)
                self._local.context = _RunContext(pieces, masks)
                try:
                    result = self.split.suffix(*folded)
                finally:
                    self._local.context = None
                for piece, part in zip(
                    pieces, torch.split(result, [p.folded_rows for p in pieces]), strict=True
                ):
                    outputs[piece.job].append(
                        part.view(piece.t1 - piece.t0, piece.rows, *part.shape[1:])
                    )
            return [torch.cat(parts) if len(parts) > 1 else parts[0] for parts in outputs]

    def _run_prefix(self, jobs: Sequence[SampleJob]) -> list[tuple[Tensor, ...]]:
        """Deterministic prefix outputs per job, computed once over all jobs' rows."""
        inputs = torch.cat([job.inputs for job in jobs]).to(self.device, self.dtype)
        shared = self.split.prefix(inputs)
        sizes = [int(job.inputs.shape[0]) for job in jobs]
        per_value = [torch.split(value, sizes) for value in shared]
        return [tuple(values[j] for values in per_value) for j in range(len(jobs))]

    @staticmethod
    def _fold(pieces: list[_Piece], prefix_outputs: list[tuple[Tensor, ...]]) -> list[Tensor]:
        """Repeat each piece's prefix outputs (t1 - t0) times, sample-major, then concatenate."""
        n_values = len(prefix_outputs[0])
        folded = []
        for v in range(n_values):
            parts = []
            for piece in pieces:
                value = prefix_outputs[piece.job][v]
                reps = (piece.t1 - piece.t0,) + (1,) * (value.dim() - 1)
                parts.append(value.repeat(reps))
            folded.append(parts[0] if len(parts) == 1 else torch.cat(parts))
        return folded

    def _make_hook(self, layer: DropoutLayer):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor | None:
            context: _RunContext | None = getattr(self._local, "context", None)
            if context is None:
                return None
            return self._apply_dropout(layer, args[0], context)

        return hook

    @staticmethod
    def _apply_dropout(layer: DropoutLayer, x: Tensor, context: _RunContext) -> Tensor:
        p = layer.p
        if p <= 0.0:
            return x
        parts = torch.split(x, [piece.folded_rows for piece in context.pieces])
        dropped = []
        for piece, part in zip(context.pieces, parts, strict=True):
            n = piece.t1 - piece.t0
            per_sample = part.view(n, piece.rows, *part.shape[1:])
            shape = mask_shape(layer.mask_kind, part.shape[1:])
            keep = context.masks[piece.job].keep_mask(layer.index, piece.t0, piece.t1, shape, p)
            dropped.append(apply_mask(per_sample, keep.unsqueeze(1), p, layer.alpha).view_as(part))
        return dropped[0] if len(dropped) == 1 else torch.cat(dropped)


__all__ = ["MASK_BLOCK", "MCSampler", "SampleJob", "plan_chunks", "stream_seed"]
