"""Splitting a model into a deterministic prefix and a stochastic suffix.

Everything before the first dropout gives the same output on every MC pass, so it only needs to
run once per input row. :func:`whole_model_split` is the trivial split (empty prefix).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import Tensor, nn


class _Prefix(Protocol):
    def __call__(self, x: Tensor) -> tuple[Tensor, ...]: ...


class _Suffix(Protocol):
    def __call__(self, *values: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class ModelSplit:
    """prefix(x) -> values crossing the split, each (B, ...); suffix(*values) -> output."""

    prefix: _Prefix
    suffix: _Suffix
    prefix_fraction: float
    """Share of the model's parameters-carrying ops that run in the prefix (0 = none)."""
    reason: str
    """Why the split is what it is (shown in metadata and logs)."""


def whole_model_split(model: nn.Module, reason: str = "no prefix split") -> ModelSplit:
    """No prefix: every pass runs the whole model."""

    def prefix(x: Tensor) -> tuple[Tensor, ...]:
        return (x,)

    def suffix(*values: Tensor) -> Tensor:
        output: Tensor = model(*values)
        return output

    return ModelSplit(prefix, suffix, 0.0, reason)
