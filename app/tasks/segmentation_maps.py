"""Per-pixel maps of a segmentation answer, written as JSON lists, PNG or ``.npy`` (base64).

- ``json``: nested lists, ``mask[h][w]`` the class index, ``mean[c][h][w]`` probabilities.
- ``png``: the mask an 8-bit grayscale PNG of class indices; each float map a 16-bit grayscale
  PNG whose pixel value v stands for ``v / 65535 * scale[name]`` (probabilities: scale 1;
  entropies and mutual information: ln C, their largest value); ``mean`` one PNG per class.
  Lossless up to that 1/65535 step.
- ``npy``: NumPy ``.npy`` files, ``mask`` uint8 (H, W), the others float32 ((C, H, W) for
  ``mean``), exact.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel
from torch import Tensor

MapFormat = Literal["json", "png", "npy", "none"]
"""How a request wants its maps; ``none``: the per-image summaries alone."""
FLOAT_MAPS = ("predictive_entropy", "expected_entropy", "mutual_information")
_PNG_LEVELS = 65535


class SegmentationMaps(BaseModel):
    """The per-pixel maps of one image in the request's format."""

    format: Literal["json", "png", "npy"]
    mask: list[list[int]] | str
    """Predicted class per pixel."""
    mean: list[list[list[float]]] | list[str] | str
    """Mean probability per class and pixel (C, H, W)."""
    predictive_entropy: list[list[float]] | str
    expected_entropy: list[list[float]] | str
    mutual_information: list[list[float]] | str
    scale: dict[str, float] | None = None
    """PNG only: a 16-bit pixel value v of map ``name`` is ``v / 65535 * scale[name]``."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _png(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return _b64(buffer.getvalue())


def _png16(values: Tensor, scale: float) -> str:
    """A float map (H, W) in [0, scale] as a base64 16-bit grayscale PNG."""
    levels = (values.double() / scale).clamp(0.0, 1.0) * _PNG_LEVELS
    return _png(levels.round().numpy().astype(np.uint16))


def _npy(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return _b64(buffer.getvalue())


def encode_maps(
    fmt: Literal["json", "png", "npy"],
    mask: Tensor,
    mean: Tensor,
    floats: dict[str, Tensor],
) -> SegmentationMaps:
    """One image's maps: ``mask (H, W)`` long, ``mean (C, H, W)``, ``floats`` the (H, W)
    entropy maps by name (:data:`FLOAT_MAPS`)."""
    if fmt == "json":
        return SegmentationMaps(
            format="json",
            mask=mask.tolist(),
            mean=mean.tolist(),
            **{name: values.tolist() for name, values in floats.items()},
        )
    if fmt == "npy":
        return SegmentationMaps(
            format="npy",
            mask=_npy(mask.numpy().astype(np.uint8)),
            mean=_npy(mean.numpy().astype(np.float32)),
            **{name: _npy(values.numpy().astype(np.float32)) for name, values in floats.items()},
        )
    top = math.log(max(int(mean.shape[0]), 2))
    return SegmentationMaps(
        format="png",
        mask=_png(mask.numpy().astype(np.uint8)),
        mean=[_png16(plane, 1.0) for plane in mean],
        scale={"mean": 1.0, **dict.fromkeys(floats, top)},
        **{name: _png16(values, top) for name, values in floats.items()},
    )
