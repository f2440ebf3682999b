"""Custom stochastic modules sampled as they are: run in training mode under a seeded generator.

A module named in the card's ``mc_dropout: {modules: [...]}`` (a hand-written LockedDropout,
DropConnect, a noise layer, stochastic depth) is a dropout site of kind
:attr:`app.engine.dropout.MaskKind.MODULE`: the fx split treats it as a stochastic call, and
during a sampling run each pass ``t`` of a job calls the module on that pass's rows alone, with
the module (and its descendants, normalization layers excepted) in training mode and torch's
global generator seeded with ``(request seed, site, t)``.

What that guarantees: pass ``t`` of a request is a pure function of its rows, seed and ``t``,
so seeded requests are reproducible, chunking and fused neighbours change nothing, and adaptive
rounds continue a run. What it does not: the draws are torch's own (they change with torch's
kernels and version), a module drawing one value per call draws one per pass (as in the model's
own MC dropout with one pass per call), and a module drawing per row draws for the request's
rows in order, so a row's numbers depend on how many rows came before it in the request. The
global generator is held under one lock and restored after each call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase

from app.engine.masks import stream_seed
from app.engine.scripted import GLOBAL_RNG_LOCK

SAMPLED_MODULE_NOTE = (
    "run in training mode under torch's generator seeded per (request seed, site, pass): "
    "reproducible, independent of chunking and of fused requests; the draws are torch's and "
    "per-row draws depend on the request's row count"
)

RowsOf = Callable[[int, int], Tensor]
"""(piece index, pass offset in the piece) -> that pass's input rows (rows, *F)."""


def sample_module(
    module: nn.Module,
    stream: int,
    pieces: Sequence[tuple[int, int, int, int]],
    rows_of: RowsOf,
) -> Tensor:
    """The module's stochastic output for a chunk: for each piece (seed, first pass, passes,
    padded rows), each pass run alone on its rows under a generator seeded with (seed, stream,
    pass), zero rows for the padding; (sum of padded rows, *output features)."""
    outputs: list[Tensor] = []
    with GLOBAL_RNG_LOCK, _training(module):
        for index, (seed, first, passes, padded) in enumerate(pieces):
            filled = 0
            for k in range(passes):
                rows = rows_of(index, k)
                devices = [rows.device.index or 0] if rows.device.type == "cuda" else []
                with torch.random.fork_rng(devices=devices):
                    torch.manual_seed(stream_seed(seed, stream, first + k))
                    out = module(rows)
                outputs.append(out)
                filled += out.shape[0]
            if filled < padded:
                outputs.append(outputs[-1].new_zeros((padded - filled, *outputs[-1].shape[1:])))
    return torch.cat(outputs) if len(outputs) > 1 else outputs[0]


@contextmanager
def _training(module: nn.Module) -> Iterator[None]:
    """The module and its descendants in training mode, normalization layers kept in eval."""
    modes = [(m, m.training) for m in module.modules()]
    for m, _ in modes:
        m.training = not isinstance(m, _NormBase)
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
