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
samples: a seeded job gets bit-identical outputs alone, fused with others, or chunked. A model
with large activations per row runs each piece in calls of fewer rows, the same count for every
call (:mod:`app.engine.row_calls`). A job may carry its prefix output (``SampleJob.prefix``) from
an earlier round, so a request sampled in rounds runs the prefix once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from app.engine.dropout import DropoutLayer, MaskKind, apply_mask, mask_shape
from app.engine.masks import MaskSource
from app.engine.module_sites import sample_module
from app.engine.prefix import ModelSplit, Unfolded, whole_model_split
from app.engine.row_calls import call_rows, mask_stream, masks_of_samples, sample_piece_in_calls
from app.engine.sampling import ROW_ALIGN, SampleJob, Sampler

__all__ = ["MCSampler", "plan_chunks"]


@dataclass(frozen=True)
class _Piece:
    """Samples t0..t1-1 of one job, placed inside one forward chunk (padded to ROW_ALIGN)."""

    job: int
    t0: int
    t1: int
    rows: int

    @cached_property
    def folded_rows(self) -> int:
        return (self.t1 - self.t0) * self.rows

    @cached_property
    def padded_rows(self) -> int:
        return -(-self.folded_rows // ROW_ALIGN) * ROW_ALIGN

    @cached_property
    def covered_samples(self) -> int:
        """Samples whose rows fill the piece's block: when ``rows`` divides the padded size the
        padding holds further samples (computed and dropped, no zero rows to write), otherwise
        only t1 - t0 and the padding rows are zeros."""
        padded = self.padded_rows
        return padded // self.rows if padded % self.rows == 0 else self.t1 - self.t0


def plan_chunks(jobs: Sequence[SampleJob], max_rows: int) -> list[list[_Piece]]:
    """Pack every job's samples into chunks of at most ``max_rows`` padded rows.

    Chunks break inside a job only at multiples of ``ROW_ALIGN`` samples (counted from the
    job's first sample) unless fewer fit; a chunk holds at least one sample, so a job wider than
    ``max_rows`` still runs.
    """
    if len(jobs) == 1:  # the common case of a lone request that fits one forward call
        job = jobs[0]
        rows = int(job.inputs.shape[0])
        alone = _Piece(0, job.first_sample, job.first_sample + job.n_samples, rows)
        if alone.padded_rows <= max_rows:
            return [[alone]]
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
    return min(remaining, aligned if aligned or not empty else fit)


class MCSampler(Sampler):
    """Runs MC dropout passes for a model kept in eval mode.

    With an fx split the compiled suffix calls the run's mask applier at each dropout; without
    one, dropout modules get forward hooks that call it while a run is active (and do nothing
    otherwise). Either way BatchNorm and every other layer keep their eval behaviour.
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
        self._handles: list[RemovableHandle] = []
        if not self.split.applies_dropout:
            self._handles = [
                layer.module.register_forward_hook(self._make_hook(layer))
                for layer in self.dropout_layers
            ]

    def close(self) -> None:
        """Remove the dropout hooks (the model then behaves as a plain eval model)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def features(self, inputs: Tensor) -> Tensor | None:
        """The split's crossing value entering the first dropout, flattened: (B, F) float64;
        None without a prefix. One prefix pass over the request's rows, dropout off."""
        if self.split.feature_index is None:
            return None
        with torch.inference_mode():
            return self._feature_of(self.split.prefix(self._to_device(inputs)))

    def prefix_of(self, inputs: Tensor) -> tuple[Tensor, ...] | None:
        """The split's prefix on the request's rows alone (what ``_sample_group`` would run),
        kept by callers that sample the same rows in rounds."""
        with torch.inference_mode():
            return self.split.prefix(self._to_device(inputs))

    def _feature_of(self, prefix_output: tuple[Tensor, ...]) -> Tensor | None:
        index = self.split.feature_index
        return None if index is None else prefix_output[index].flatten(1).double().cpu()

    def sample_jobs(self, jobs: Sequence[SampleJob]) -> list[Tensor]:
        """MC outputs (N_j, B_j, *output_shape) for every job, sharing forward passes among
        jobs whose rows have the same shape (texts padded to different lengths run apart)."""
        return [output for output, _ in self._run(jobs)]

    def sample_jobs_and_features(
        self, jobs: Sequence[SampleJob]
    ) -> tuple[list[Tensor], list[Tensor | None]]:
        """``sample_jobs`` and each job's ``features``, taken from the prefix pass the sampling
        ran anyway (once per job, so a job's features do not depend on its neighbours)."""
        results = self._run(jobs)
        return [r[0] for r in results], [self._feature_of(r[1]) for r in results]

    def _run(self, jobs: Sequence[SampleJob]) -> list[tuple[Tensor, tuple[Tensor, ...]]]:
        """(outputs, prefix outputs) of every job, run in groups of one row shape."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, job in enumerate(jobs):
            groups.setdefault(tuple(job.inputs.shape[1:]), []).append(index)
        if len(groups) == 1:
            return self._sample_group(jobs)
        results: list[tuple[Tensor, tuple[Tensor, ...]] | None] = [None] * len(jobs)
        for members in groups.values():
            for i, result in zip(
                members, self._sample_group([jobs[i] for i in members]), strict=True
            ):
                results[i] = result
        return [result for result in results if result is not None]

    def _sample_group(self, jobs: Sequence[SampleJob]) -> list[tuple[Tensor, tuple[Tensor, ...]]]:
        with torch.inference_mode():
            prefix_outputs = [self._prefix_of_job(job) for job in jobs]
            outputs: list[list[Tensor]] = [[] for _ in jobs]
            masks = [MaskSource(job.seed, self.device) for job in jobs]
            rows = call_rows(self.split, jobs[0].inputs[0], self.dropout_layers, self.call_bytes)
            for pieces in plan_chunks(jobs, self.max_rows):
                parts = self._chunk_outputs(pieces, masks, prefix_outputs, rows)
                for piece, part in zip(pieces, parts, strict=True):
                    outputs[piece.job].append(part)
            joined = [torch.cat(parts) if len(parts) > 1 else parts[0] for parts in outputs]
            return list(zip(joined, prefix_outputs, strict=True))

    def _chunk_outputs(
        self,
        pieces: list[_Piece],
        masks: list[MaskSource],
        prefix_outputs: list[tuple[Tensor, ...]],
        rows: int,
    ) -> list[Tensor]:
        """Each piece's outputs (t1 - t0, rows, *output_shape): one forward call for the chunk,
        or, for large activations (``rows`` < ROW_ALIGN), calls of ``rows`` rows per piece."""
        if rows < ROW_ALIGN:
            layers = self.dropout_layers
            return [
                sample_piece_in_calls(
                    self.split, layers, piece, masks[piece.job], prefix_outputs[piece.job], rows
                )
                for piece in pieces
            ]
        folded = _fold(pieces, prefix_outputs, self.split.dropout_inputs)
        dropout = ChunkDropout(self.dropout_layers, pieces, masks, prefix_outputs)
        self._local.context = dropout
        try:
            result = self.split.suffix(dropout, *folded)
        finally:
            self._local.context = None
        return _piece_outputs(result, pieces)

    def _prefix_of_job(self, job: SampleJob) -> tuple[Tensor, ...]:
        """The job's kept prefix output (an earlier round's), or the prefix run on its rows."""
        if job.prefix is not None:
            return job.prefix
        return self.split.prefix(self._to_device(job.inputs))

    def _make_hook(self, layer: DropoutLayer):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor | None:
            context: ChunkDropout | None = getattr(self._local, "context", None)
            if context is None:
                return None
            return context.apply(layer.index, args[0])

        return hook


def _fold(
    pieces: list[_Piece],
    prefix_outputs: list[tuple[Tensor, ...]],
    unfolded: frozenset[int] = frozenset(),
) -> list[Tensor | Unfolded]:
    """Repeat each piece's prefix outputs over its covered samples, sample-major; padding rows
    that no sample covers are zeros. Values at the ``unfolded`` positions stay markers."""
    return [
        Unfolded(v) if v in unfolded else _fold_value(pieces, prefix_outputs, v)
        for v in range(len(prefix_outputs[pieces[0].job]))
    ]


def _fold_value(pieces: list[_Piece], prefix_outputs: list[tuple[Tensor, ...]], v: int) -> Tensor:
    piece = pieces[0]
    if len(pieces) == 1 and piece.padded_rows == piece.covered_samples * piece.rows:
        value = prefix_outputs[piece.job][v]
        n = piece.covered_samples
        return (
            value.expand(n, *value.shape).reshape(piece.padded_rows, *value.shape[1:]).contiguous()
        )

    def repeat(piece: _Piece, offset: int, target: Tensor) -> None:
        target.copy_(prefix_outputs[piece.job][v].expand_as(target))

    return _write_pieces(pieces, prefix_outputs[piece.job][v], repeat)


PieceWriter = Callable[[_Piece, int, Tensor], None]
"""Fills one piece's rows: (piece, its first row in the chunk, target (samples, rows, *F))."""


def _write_pieces(pieces: list[_Piece], like: Tensor, write: PieceWriter) -> Tensor:
    """A chunk's rows (sum of padded rows, *like's features): ``write`` fills each piece's
    covered samples, padding rows no sample covers are zeros."""
    features = like.shape[1:]
    out = like.new_empty((sum(piece.padded_rows for piece in pieces), *features))
    offset = 0
    for piece in pieces:
        covered = piece.covered_samples * piece.rows
        write(piece, offset, out[offset : offset + covered].view(-1, piece.rows, *features))
        if covered < piece.padded_rows:
            out[offset + covered : offset + piece.padded_rows].zero_()
        offset += piece.padded_rows
    return out


def _piece_outputs(result: Tensor, pieces: list[_Piece]) -> list[Tensor]:
    """Each piece's outputs (t1 - t0, rows, *output_shape), padding dropped."""
    if len(pieces) == 1:
        piece = pieces[0]
        return [
            result[: piece.folded_rows].view(piece.t1 - piece.t0, piece.rows, *result.shape[1:])
        ]
    parts = torch.split(result, [piece.padded_rows for piece in pieces])
    return [
        part[: piece.folded_rows].view(piece.t1 - piece.t0, piece.rows, *part.shape[1:])
        for piece, part in zip(pieces, parts, strict=True)
    ]


class ChunkDropout:
    """Applies one forward chunk's seeded masks: each piece's rows times its job's masks."""

    def __init__(
        self,
        layers: Sequence[DropoutLayer],
        pieces: list[_Piece],
        masks: list[MaskSource],
        prefix_outputs: list[tuple[Tensor, ...]],
    ) -> None:
        self.layers = layers
        self.pieces = pieces
        self.masks = masks
        self.prefix_outputs = prefix_outputs
        self._calls: dict[int, int] = {}

    def apply(self, index: int, x: Tensor | Unfolded) -> Tensor:
        """Dropout layer ``index`` on x; a module called again within one forward pass (RoBERTa's
        head applies its dropout twice) draws an independent mask stream for each call."""
        call = self._calls.get(index, 0)
        self._calls[index] = call + 1
        return self._apply(index, call, x)

    def _apply(self, index: int, call: int, x: Tensor | Unfolded) -> Tensor:
        """Call ``call`` of dropout layer ``index`` on the chunk's activations x (rows, *features),
        or on a crossing value not yet folded, which is repeated over samples by the masking itself
        (value (B, *F) times each sample's mask, broadcast over rows: the same values as
        folding first and masking after)."""
        layer = self.layers[index]
        if layer.mask_kind is MaskKind.MODULE:
            return self._module(layer, call, x)
        if layer.p <= 0.0 or layer.alpha:
            if isinstance(x, Unfolded):
                x = _fold_value(self.pieces, self.prefix_outputs, x.index)
            return x if layer.p <= 0.0 else self._alpha(layer, call, x)
        first = self.pieces[0]
        like = self.prefix_outputs[first.job][x.index] if isinstance(x, Unfolded) else x
        shape = mask_shape(layer.mask_kind, like.shape[1:], layer.shared)

        def rows_of(piece: _Piece, offset: int) -> Tensor:
            """The piece's input: (samples, rows, *F) of x, or the unfolded value (rows, *F)."""
            if isinstance(x, Unfolded):
                return self.prefix_outputs[piece.job][x.index]
            covered = x[offset : offset + piece.covered_samples * piece.rows]
            return covered.view(-1, piece.rows, *like.shape[1:])

        def scaled(piece: _Piece) -> Tensor:
            """Scaled masks (samples, 1, *shape), broadcast over the piece's rows."""
            n = piece.covered_samples
            return self._mask(piece, layer, call, n, shape, like.dtype).unsqueeze(1)

        if len(self.pieces) == 1 and first.covered_samples * first.rows == first.padded_rows:
            # reshape: an unfolded value need not be contiguous (an RNN's batch-first output)
            return torch.mul(rows_of(first, 0), scaled(first)).reshape(-1, *like.shape[1:])

        def mask(piece: _Piece, offset: int, target: Tensor) -> None:
            torch.mul(rows_of(piece, offset), scaled(piece), out=target)

        return _write_pieces(self.pieces, like, mask)

    def sample_masks(
        self,
        index: int,
        shape: tuple[int, ...],
        dtype: torch.dtype,
        covered: bool = False,
        scaled: bool = True,
    ) -> list[Tensor]:
        """The next call of dropout layer ``index`` (a plain mask, p > 0) as each piece's scaled
        masks (samples, 1, *shape), for a suffix that masks its activations itself: the piece's
        own samples t0..t1-1 (a suffix that skips the padding samples) or, with ``covered``,
        all it covers (the padded layout's). The same masks ``apply`` multiplies by
        (without ``scaled`` 0 or 1: the caller multiplies by 1 / (1 - p))."""
        call = self._calls.get(index, 0)
        self._calls[index] = call + 1
        layer = self.layers[index]
        masks = []
        for piece in self.pieces:
            n = piece.covered_samples if covered else piece.t1 - piece.t0
            source = self.masks[piece.job]
            mask = masks_of_samples(
                source, layer, call, piece.t0, piece.t0 + n, shape, dtype, scaled
            )
            masks.append(mask.unsqueeze(1))
        return masks

    def _module(self, layer: DropoutLayer, call: int, x: Tensor | Unfolded) -> Tensor:
        """A stochastic module run pass by pass under seeded generators (its rows alone)."""
        offsets = [0]
        for piece in self.pieces:
            offsets.append(offsets[-1] + piece.padded_rows)

        def rows_of(index: int, k: int) -> Tensor:
            piece = self.pieces[index]
            if isinstance(x, Unfolded):
                return self.prefix_outputs[piece.job][x.index]
            start = offsets[index] + k * piece.rows
            return x[start : start + piece.rows]

        pieces = [
            (self.masks[p.job].seed, p.t0, p.covered_samples, p.padded_rows) for p in self.pieces
        ]
        return sample_module(layer.module, _stream(layer, call), pieces, rows_of)

    def _alpha(self, layer: DropoutLayer, call: int, x: Tensor) -> Tensor:
        """Alpha dropout on folded activations (keeps SELU's self-normalisation)."""
        shape = mask_shape(layer.mask_kind, x.shape[1:], layer.shared)

        def mask(piece: _Piece, offset: int, target: Tensor) -> None:
            n = piece.covered_samples
            source = self.masks[piece.job]
            keep = source.keep_mask(_stream(layer, call), piece.t0, piece.t0 + n, shape, layer.p)
            per_sample = x[offset : offset + n * piece.rows].view_as(target)
            target.copy_(apply_mask(per_sample, keep.unsqueeze(1), layer.p, alpha=True))

        return _write_pieces(self.pieces, x, mask)

    def _mask(
        self,
        piece: _Piece,
        layer: DropoutLayer,
        call: int,
        n: int,
        shape: tuple[int, ...],
        dtype: torch.dtype,
    ) -> Tensor:
        """Scaled masks (n, *shape) of samples t0..t0+n-1 of the piece's job."""
        source = self.masks[piece.job]
        return masks_of_samples(source, layer, call, piece.t0, piece.t0 + n, shape, dtype)


_stream = mask_stream
