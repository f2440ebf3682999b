"""Model architectures bundled with mcdrop, addressable by name from a model card.

A card's `architecture: {bundled: NAME, kwargs: {...}}` is turned into a module by
`build_bundled(NAME, kwargs)`; weights are loaded separately.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from app.architectures.audio import KeywordGRU
from app.architectures.cnn import DigitsCNN
from app.architectures.layers import Destandardize, Standardize
from app.architectures.mlp import DropoutMLP
from app.architectures.unet import DropoutUNet

BUNDLED: dict[str, type[nn.Module]] = {
    "dropout_mlp": DropoutMLP,
    "digits_cnn": DigitsCNN,
    "keyword_gru": KeywordGRU,
    "dropout_unet": DropoutUNet,
}
"""Bundled architecture name -> class."""


class UnknownArchitectureError(KeyError, ValueError):
    """The name is not in `BUNDLED`; catchable as KeyError or ValueError."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def build_bundled(name: str, kwargs: Mapping[str, object]) -> nn.Module:
    """Instantiate the bundled architecture `name` with `kwargs` (freshly initialised weights).

    Raises UnknownArchitectureError (a KeyError and a ValueError) for an unknown name, and
    ValueError when the kwargs do not fit the class's constructor.
    """
    try:
        cls = BUNDLED[name]
    except KeyError:
        known = ", ".join(sorted(BUNDLED))
        raise UnknownArchitectureError(
            f"unknown bundled architecture {name!r}; known: {known}"
        ) from None
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"invalid kwargs for bundled architecture {name!r}: {exc}") from exc


__all__ = [
    "BUNDLED",
    "Destandardize",
    "DigitsCNN",
    "DropoutMLP",
    "DropoutUNet",
    "KeywordGRU",
    "Standardize",
    "UnknownArchitectureError",
    "build_bundled",
]
