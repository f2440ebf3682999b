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
"""

from __future__ import annotations

import threading
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

_CUT = threading.local()


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
