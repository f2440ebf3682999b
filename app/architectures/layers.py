"""Normalisation layers that travel with a model's weights.

Clients send raw features (e.g. digits pixel values 0..16); the statistics used to normalise
them are buffers, so they are saved in the state dict and restored with the weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def _as_shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    return (shape,) if isinstance(shape, int) else tuple(shape)


class _AffineStats(nn.Module):
    """Holds `mean` and `std` buffers of a fixed shape (identity statistics until loaded)."""

    mean: Tensor
    std: Tensor

    def __init__(self, shape: int | Sequence[int]) -> None:
        super().__init__()
        dims = _as_shape(shape)
        self.register_buffer("mean", torch.zeros(dims))
        self.register_buffer("std", torch.ones(dims))

    def set_statistics(self, mean: Tensor, std: Tensor) -> None:
        """Copy `mean` and `std` (each of the buffers' shape) into the buffers.

        Raises ValueError when a shape differs or any `std` entry is not strictly positive.
        """
        for name, value in (("mean", mean), ("std", std)):
            if tuple(value.shape) != tuple(self.mean.shape):
                raise ValueError(
                    f"{name} has shape {tuple(value.shape)}, expected {tuple(self.mean.shape)}"
                )
        if not bool(torch.all(std > 0)):
            raise ValueError("std must be strictly positive; replace zero stds (e.g. by 1)")
        with torch.no_grad():
            self.mean.copy_(mean)
            self.std.copy_(std)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.mean.shape)}"


class Standardize(_AffineStats):
    """`(x - mean) / std`, broadcasting the buffers over the leading (batch) dimensions.

    x: (B, *shape) or any shape the buffers broadcast against -> same shape.
    """

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class Destandardize(_AffineStats):
    """`y * std + mean`: maps standardised outputs back to target units.

    y: (B, *shape) -> same shape.
    """

    def forward(self, y: Tensor) -> Tensor:
        return y * self.std + self.mean
