"""First positions only: a model's last layer computed for the positions its head reads.

A sequence classifier's head reads one position of the last layer (BERT's pooler, RoBERTa's
and DeBERTa's classifiers read the first token), yet a plain forward computes the last layer's
attention output and feed-forward block for every token. Cutting the activations to the first
position where the layer leaves the token mixing (the attention) computes only what the head
reads: the same numbers for that position, and most of one layer's work saved (the attention
output and feed-forward blocks: about 15% of a 4-layer BERT's folded pass).

Dropout sampled after the cut must still draw the sample the whole computation draws, so that
a seeded request gets the numbers it would get uncut: while a cut is active, a dropout site
whose activations (rows, k, H) hold the first k of L positions draws the masks of all L
positions and keeps the first k (:func:`drawn_shape`).

The cut layer's attention itself needs only the first query: :func:`keep_first_query` runs its
query projection on the first position and marks the attention module, so that mcdrop's
attention function (:mod:`app.registry.huggingface`) scores that query alone against every key
(the probabilities' dropout, (rows, heads, 1, L), draws the masks of all L queries).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

_CUT = threading.local()
_FIRST_QUERY: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def cut_length() -> int | None:
    """Positions L of the sequence while this thread runs the part after a cut, else None."""
    length: int | None = getattr(_CUT, "length", None)
    return length


def drawn_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The mask shape to draw for one sample's activations of ``shape`` (positions, features):
    all L positions while a cut keeps the first k < L of them, else ``shape`` itself."""
    length = cut_length()
    if length is None or len(shape) < 2 or shape[-2] >= length:
        return shape
    return (*shape[:-2], length, shape[-1])


@contextmanager
def cut_from(length: int) -> Iterator[None]:
    """Dropout inside the block draws the masks of ``length`` positions (as after a cut)."""
    previous = cut_length()
    _CUT.length = length
    try:
        yield
    finally:
        _CUT.length = previous


def first_query_only(attention: nn.Module) -> bool:
    """Whether ``attention`` computes its first query only (:func:`keep_first_query`)."""
    return attention in _FIRST_QUERY


def keep_first_query(attention: nn.Module, query: nn.Module) -> list[RemovableHandle]:
    """Compute the first query of ``attention`` only: its query projection ``query`` runs on the
    first position of its (B, L, F) input, its (B, 1, F) output is broadcast back to (B, L, F)
    as a view (the model's reshapes see the shape they expect; the repeated rows are never
    read), and :func:`first_query_only` tells the attention function to score that query
    alone. Only for a layer whose output a first-position cut keeps."""
    lengths = threading.local()

    def enter(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden = args[0]
        lengths.value = int(hidden.shape[1])
        return (hidden[:, :1], *args[1:])

    def leave(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor:
        return output.expand(output.shape[0], lengths.value, *output.shape[2:])

    _FIRST_QUERY.add(attention)
    return [query.register_forward_pre_hook(enter), query.register_forward_hook(leave)]


def keep_first_positions(
    layer: nn.Module, cut: nn.Module, positions: int = 1
) -> list[RemovableHandle]:
    """Cut every (B, L, ...) tensor argument of ``cut`` (a module inside ``layer``, after its
    attention) to its first ``positions`` positions, so ``layer`` outputs (B, positions, ...);
    dropout after the cut draws full-length masks until ``layer`` returns."""

    def enter(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        tensors = [a for a in args if isinstance(a, Tensor) and a.dim() >= 3]
        if tensors:
            _CUT.length = int(tensors[0].shape[1])
        return tuple(
            a[:, :positions] if isinstance(a, Tensor) and a.dim() >= 3 else a for a in args
        )

    def leave(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        _CUT.length = None

    return [
        cut.register_forward_pre_hook(enter),
        layer.register_forward_hook(leave, always_call=True),
    ]
