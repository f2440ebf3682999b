"""The rendered answer of a segmentation request: each image with its mask's contour and a
mutual-information heatmap over it, as one PNG (images side by side, in input order).

Pure NumPy + Pillow over the statistics (no HTTP): the input row is scaled to 0..255 by its own
range (its first channel, or its three channels as RGB), the heatmap is red with an alpha of
``opacity x MI / ln C`` (MI's largest value is ln C), and the contour is every foreground pixel
with a neighbour of another class, drawn in green.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image
from torch import Tensor

CONTOUR_RGB = (0, 230, 64)
HEAT_RGB = (255, 32, 0)
GAP = 4
"""Pixels between two images of one request."""


def _gray_or_rgb(image: Tensor) -> np.ndarray:
    """(channels, H, W) input row -> (H, W, 3) float in [0, 255], scaled by its own range."""
    array = image.double().numpy()
    rgb = array[:3] if array.shape[0] >= 3 else np.repeat(array[:1], 3, axis=0)
    low, high = float(rgb.min()), float(rgb.max())
    scaled = (rgb - low) / (high - low) * 255.0 if high > low else np.zeros_like(rgb)
    return np.moveaxis(scaled, 0, -1)


def contour(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: foreground pixels (class != 0) with a 4-neighbour of another class."""
    padded = np.pad(mask, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    edge = np.zeros(mask.shape, dtype=bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        edge |= padded[dy : dy + mask.shape[0], dx : dx + mask.shape[1]] != centre
    foreground: np.ndarray = edge & (mask != 0)
    return foreground


def overlay(image: Tensor, mask: Tensor, mi: Tensor, classes: int, opacity: float) -> np.ndarray:
    """One image's overlay (H, W, 3) uint8: the input, the MI heatmap, the mask contour."""
    base = _gray_or_rgb(image)
    if base.shape[:2] != tuple(mask.shape):
        base = np.zeros((*mask.shape, 3))
    alpha = opacity * np.clip(mi.double().numpy() / math.log(max(classes, 2)), 0.0, 1.0)
    blended = base * (1 - alpha[..., None]) + np.array(HEAT_RGB) * alpha[..., None]
    blended[contour(mask.numpy())] = CONTOUR_RGB
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def overlay_png(images: list[np.ndarray]) -> bytes:
    """Overlays (H, W, 3) side by side, ``GAP`` white pixels apart, as PNG bytes."""
    height = max(image.shape[0] for image in images)
    width = sum(image.shape[1] for image in images) + GAP * (len(images) - 1)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    x = 0
    for image in images:
        canvas[: image.shape[0], x : x + image.shape[1]] = image
        x += image.shape[1] + GAP
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG")
    return buffer.getvalue()
