"""The MC sampler: N stochastic passes for many rows in few forward calls.

Samples are folded into the batch dimension (sample-major: row ``t * B + b`` of a job's block is
sample ``t`` of input row ``b``) and pushed through the model in chunks of at most ``max_rows``
rows. Several jobs (requests) can share one forward call. The part of the model before the first
dropout (the deterministic prefix, see :mod:`app.engine.prefix`) runs once per job on its own
rows, not once per sample.

Reproducibility: masks depend only on (seed, layer, sample index), and the BLAS kernels behind
linear and convolution layers give each row the same bits as long as the row block it sits in
starts at an aligned offset and the call has an aligned number of rows. So every job's block is
padded to a multiple of ``ROW_ALIGN`` rows and chunks break at multiples of ``ROW_ALIGN``
samples: a seeded job gets bit-identical outputs alone, fused with others, or chunked.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from app.engine.dropout import DropoutLayer, apply_mask, mask_shape
from app.engine.masks import MaskSource
from app.engine.prefix import ModelSplit, whole_model_split

ROW_ALIGN = 16


@dataclass(frozen=True)
class SampleJob:
    """One request's share of a run: inputs (B, *input_shape), samples first..first+N-1, seed."""

    inputs: Tensor
    n_samples: int
    seed: int
    first_sample: int = 0


@dataclass(frozen=True)
class _Piece:
    """Samples t0..t1-1 of one job, placed inside one forward chunk (padded to ROW_ALIGN)."""

    job: int
    t0: int
    t1: int
    rows: int

    @property
    def folded_rows(self) -> int:
        return (self.t1 - self.t0) * self.rows

    @property
    def padded_rows(self) -> int:
        return -(-self.folded_rows // ROW_ALIGN) * ROW_ALIGN


@dataclass(frozen=True)
class _RunContext:
    pieces: list[_Piece]
    masks: list[MaskSource]


def plan_chunks(jobs: Sequence[SampleJob], max_rows: int) -> list[list[_Piece]]:
    """Pack every job's samples into chunks of at most ``max_rows`` padded rows.

    Chunks break inside a job only at multiples of ``ROW_ALIGN`` samples (counted from the
    job's first sample) unless fewer fit; a chunk holds at least one sample, so a job wider than
    ``max_rows`` still runs.
    """
    chunks: list[list[_Piece]] = []
    current: list[_Piece] = []
    used = 0
    for index, job in enumerate(jobs):
        rows = int(job.inputs.shape[0])
        t, end = job.first_sample, job.first_sample + job.n_samples
        while t < end:
            fit = _samples_that_fit(max_rows - used, rows, end - t, empty=not current)
            if fit == 0 and current:
                chunks.append(current)
                current, used = [], 0
                continue
            piece = _Piece(index, t, t + max(fit, 1), rows)
            current.append(piece)
            used += piece.padded_rows
            t = piece.t1
    if current:
        chunks.append(current)
    return chunks


def _samples_that_fit(free_rows: int, rows: int, remaining: int, empty: bool) -> int:
    """Samples of a job to place now: all remaining, an aligned count, or (only in an empty
    chunk, when not even ROW_ALIGN samples fit) as many as fit."""
    if remaining * rows <= free_rows - (-(remaining * rows) % ROW_ALIGN):
        return remaining
    fit = max(free_rows, 0) // rows
    aligned = fit // ROW_ALIGN * ROW_ALIGN
    return aligned if aligned or not empty else fit


class BaseSampler:
    """What every sampler holds: the model in eval mode, its dropout layers, the row limit of
    one forward call, device and dtype. Subclasses implement ``sample_jobs`` and ``close``."""

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

    def sample(self, inputs: Tensor, n_samples: int, seed: int) -> Tensor:
        """MC outputs (N, B, *output_shape) for inputs (B, *input_shape)."""
        return self.sample_jobs([SampleJob(inputs, n_samples, seed)])[0]

    def sample_jobs(self, jobs: Sequence[SampleJob]) -> list[Tensor]:
        """MC outputs (N_j, B_j, *output_shape) for every job."""
        raise NotImplementedError

    def close(self) -> None:
        """Undo whatever the sampler changed on the model."""


class MCSampler(BaseSampler):
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
        super().__init__(model, dropout_layers, max_rows=max_rows, device=device, dtype=dtype)
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

    def sample_jobs(self, jobs: Sequence[SampleJob]) -> list[Tensor]:
        """MC outputs (N_j, B_j, *output_shape) for every job, sharing forward passes."""
        with torch.inference_mode():
            prefix_outputs = [self.split.prefix(self._to_device(job.inputs)) for job in jobs]
            outputs: list[list[Tensor]] = [[] for _ in jobs]
            masks = [MaskSource(job.seed, self.device) for job in jobs]
            for pieces in plan_chunks(jobs, self.max_rows):
                folded = self._fold(pieces, prefix_outputs)
                self._local.context = _RunContext(pieces, masks)
                try:
                    result = self.split.suffix(*folded)
                finally:
                    self._local.context = None
                parts = torch.split(result, [p.padded_rows for p in pieces])
                for piece, part in zip(pieces, parts, strict=True):
                    per_sample = part[: piece.folded_rows]
                    n = piece.t1 - piece.t0
                    outputs[piece.job].append(per_sample.view(n, piece.rows, *part.shape[1:]))
            return [torch.cat(parts) if len(parts) > 1 else parts[0] for parts in outputs]

    def _to_device(self, inputs: Tensor) -> Tensor:
        return inputs.to(self.device, self.dtype)

    @staticmethod
    def _fold(pieces: list[_Piece], prefix_outputs: list[tuple[Tensor, ...]]) -> list[Tensor]:
        """Repeat each piece's prefix outputs (t1 - t0) times, sample-major, padded with zeros."""
        total = sum(piece.padded_rows for piece in pieces)
        folded = []
        for v, first in enumerate(prefix_outputs[pieces[0].job]):
            buffer = first.new_empty((total, *first.shape[1:]))
            offset = 0
            for piece in pieces:
                value = prefix_outputs[piece.job][v]
                n = piece.t1 - piece.t0
                block = buffer[offset : offset + piece.folded_rows]
                block.view(n, *value.shape).copy_(value.expand(n, *value.shape))
                buffer[offset + piece.folded_rows : offset + piece.padded_rows].zero_()
                offset += piece.padded_rows
            folded.append(buffer)
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
        """Each piece's rows times its job's masks; padding rows come out as zeros."""
        p = layer.p
        if p <= 0.0:
            return x
        out = torch.empty_like(x)
        features = x.shape[1:]
        shape = mask_shape(layer.mask_kind, features)
        offset = 0
        for piece in context.pieces:
            n, rows = piece.t1 - piece.t0, piece.rows
            masks = context.masks[piece.job]
            active = slice(offset, offset + piece.folded_rows)
            per_sample = x[active].view(n, rows, *features)
            target = out[active].view(n, rows, *features)
            if layer.alpha:
                keep = masks.keep_mask(layer.index, piece.t0, piece.t1, shape, p)
                target.copy_(apply_mask(per_sample, keep.unsqueeze(1), p, alpha=True))
            else:
                scaled = masks.scaled_mask(layer.index, piece.t0, piece.t1, shape, p, x.dtype)
                torch.mul(per_sample, scaled.unsqueeze(1), out=target)
            out[offset + piece.folded_rows : offset + piece.padded_rows].zero_()
            offset += piece.padded_rows
        return out
