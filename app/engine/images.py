"""Encoded images -> checked model input tensors: decode, convert channels, resize, crop, scale.

Pure functions over bytes and Pillow images (no HTTP). Pillow is an optional dependency
(``pip install "mcdrop[vision]"``): it is imported on first use, so a server without it still
serves every other model, and an image model fails to load with that instruction.

The card-driven preprocessing (:class:`ImagePreprocessing`) is the torchvision recipe written
with Pillow: shorter side resized to ``resize`` (bilinear, antialiased), central ``size`` crop,
pixels scaled to [0, 1], then ``(x - mean) / std`` per channel.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import Tensor

from app.errors import InvalidInputError, ModelLoadError

if TYPE_CHECKING:
    from PIL import Image

FORMATS = ("PNG", "JPEG", "WEBP")
"""Encodings the server decodes; anything else is refused before its pixels are read."""

VISION_EXTRA = 'image models need Pillow: pip install "mcdrop[vision]"'

_GREY_MODES = {"1", "L", "LA", "La"}
_COLOUR_MODES = {"RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr"}


class InvalidImageError(InvalidInputError):
    """An input meant as an image is not one the model can take (corrupt, too large, wrong
    format or channel count); a 4xx naming the input."""


class ImagePipeline(Protocol):
    """Decoded images -> the model's input batch; one per image model."""

    @property
    def channels(self) -> int:
        """1 (grey) or 3 (RGB): the channels the model reads."""
        ...

    def __call__(self, image: Image.Image) -> Tensor:
        """(C, H, W) float input row from a Pillow image already in ``channels``."""
        ...

    def describe(self) -> str:
        """One line saying what is done to an image (check-model and metadata show it)."""
        ...


@dataclass(frozen=True)
class ImagePreprocessing:
    """The card's ``input: {type: image, ...}`` recipe (see the module docstring)."""

    channels: int
    size: tuple[int, int]
    """(H, W) of the tensor the model reads."""
    resize: int | None = None
    """Shorter side scaled to this (aspect kept) before the crop; None: no such step."""
    center_crop: bool = True
    """True: central (H, W) crop; False: resized straight to (H, W), aspect not kept."""
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __call__(self, image: Image.Image) -> Tensor:
        """(C, H, W) float32 row; see :func:`preprocess`."""
        return preprocess(image, self)

    def describe(self) -> str:
        """E.g. ``grey, shorter side -> 36, centre crop 32x32, /255, mean [0.1] std [0.3]``."""
        steps = ["grey" if self.channels == 1 else "RGB"]
        if self.resize is not None:
            steps.append(f"shorter side -> {self.resize}")
        height, width = self.size
        steps.append(f"{'centre crop' if self.center_crop else 'resize to'} {height}x{width}")
        steps.append(f"/255, mean {list(self.mean)} std {list(self.std)}")
        return ", ".join(steps)


def require_pillow() -> None:
    """Raise ModelLoadError naming the extra to install when Pillow is missing."""
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        raise ModelLoadError(VISION_EXTRA) from None


def encoded_image(row: Any) -> bytes | None:
    """The encoded image a request row carries (raw ``bytes``, or ``{"b64": "..."}`` as in the
    KServe v1 and TF Serving JSON conventions); None for any other row (a float array)."""
    if isinstance(row, bytes | bytearray):
        return bytes(row)
    if isinstance(row, dict) and set(row) == {"b64"}:
        value = row["b64"]
        if not isinstance(value, str):
            return b""  # refused by decode_image as not an image
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return b""
    return None


def decode_image(data: bytes, max_pixels: int, field: str) -> Image.Image:
    """A fully decoded Pillow image; InvalidImageError (naming ``field``) when ``data`` is not a
    PNG, JPEG or WebP image, is corrupt, or has more than ``max_pixels`` pixels. The pixel count
    is read from the header, so a decompression bomb is refused before it is expanded."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data), formats=list(FORMATS))
    except (UnidentifiedImageError, ValueError, TypeError):
        raise InvalidImageError(field, f"is not a {', '.join(FORMATS)} image") from None
    except Image.DecompressionBombError:
        raise InvalidImageError(field, _bomb(max_pixels)) from None
    except (OSError, SyntaxError) as exc:
        raise InvalidImageError(field, f"is not a readable image ({exc})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise InvalidImageError(
            field,
            f"is {width}x{height} = {width * height} pixels, more than the limit of "
            f"{max_pixels} (max_image_pixels)",
        )
    try:
        image.load()
    except Image.DecompressionBombError:
        raise InvalidImageError(field, _bomb(max_pixels)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(field, f"is a corrupt {image.format} image ({exc})") from None
    return image


def _bomb(max_pixels: int) -> str:
    # Pillow's own decompression-bomb check (twice Image.MAX_IMAGE_PIXELS) stays as a backstop.
    return f"has more pixels than the limit of {max_pixels} (max_image_pixels)"


def to_channels(image: Image.Image, channels: int, field: str) -> Image.Image:
    """``image`` as ``L`` (channels 1) or ``RGB`` (channels 3).

    Grey becomes RGB by repeating it, palettes and CMYK are converted, alpha is dropped. A colour
    image becomes grey only when its bands are equal (grey saved as RGB): a colour photo sent to
    a grey model is refused (InvalidImageError), not silently averaged. Other modes (16-bit,
    float) are refused.
    """
    mode = image.mode
    if mode not in _GREY_MODES | _COLOUR_MODES:
        raise InvalidImageError(
            field, f"has pixel mode {mode}; send 8-bit grey, RGB or RGBA images"
        )
    if channels == 3:
        return image.convert("RGB")
    if mode in _GREY_MODES:
        return image.convert("L")
    rgb = np.asarray(image.convert("RGB"))
    if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
        raise InvalidImageError(
            field, f"has 3 colour channels ({mode}), but the model takes 1 (grey) channel"
        )
    return image.convert("RGB").getchannel(0)


def resize_and_crop(image: Image.Image, spec: ImagePreprocessing) -> Image.Image:
    """Shorter side -> ``spec.resize`` (if set), then the central ``spec.size`` crop (or a plain
    resize to ``spec.size`` without centre crop). Bilinear with antialiasing, as torchvision."""
    from PIL import Image

    height, width = spec.size
    if spec.resize is not None:
        w, h = image.size
        short = min(w, h)
        new = (spec.resize, max(1, round(h * spec.resize / w)))
        if h == short:
            new = (max(1, round(w * spec.resize / h)), spec.resize)
        image = image.resize(new, Image.Resampling.BILINEAR)
    if not spec.center_crop:
        return image.resize((width, height), Image.Resampling.BILINEAR)
    w, h = image.size
    if w < width or h < height:
        raise ValueError(f"it is {w}x{h} after resizing, smaller than the {width}x{height} crop")
    left, top = round((w - width) / 2), round((h - height) / 2)
    return image.crop((left, top, left + width, top + height))


def to_tensor(image: Image.Image, spec: ImagePreprocessing) -> Tensor:
    """(C, H, W) float32: pixels / 255, then ``(x - mean) / std`` per channel."""
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return torch.from_numpy(((pixels - mean) / std).transpose(2, 0, 1).copy())


def preprocess(image: Image.Image, spec: ImagePreprocessing) -> Tensor:
    """(C, H, W) model input from a decoded image already in ``spec.channels``."""
    return to_tensor(resize_and_crop(image, spec), spec)


def images_to_tensor(
    rows: Sequence[Any],
    pipeline: ImagePipeline | None,
    max_rows: int,
    max_pixels: int,
    field: str = "inputs",
) -> Tensor | None:
    """(B, C, H, W) float64 input rows when ``rows`` are encoded images; None when none is (the
    rows are float arrays). A mix of both, any bad image, or images for a model without an image
    ``pipeline`` is an InvalidInputError."""
    encoded = [encoded_image(row) for row in rows]
    if all(data is None for data in encoded):
        return None
    if pipeline is None:
        raise InvalidInputError(field, "this model takes float rows, not images")
    if len(rows) > max_rows:
        raise InvalidInputError(field, f"has {len(rows)} rows, more than the limit of {max_rows}")
    require_pillow()
    tensors = []
    for index, data in enumerate(encoded):
        where = f"{field}[{index}]"
        if data is None:
            raise InvalidInputError(where, "is not an image, but other rows are: send one kind")
        image = to_channels(decode_image(data, max_pixels, where), pipeline.channels, where)
        try:
            tensors.append(pipeline(image))
        except Exception as exc:  # a processor's own checks (odd sizes) are the client's problem
            raise InvalidImageError(where, f"cannot be preprocessed: {exc}") from None
    return torch.stack(tensors).to(torch.float64)
