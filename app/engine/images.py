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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import Tensor

from app.engine.progress import checkpoint
from app.errors import InvalidInputError, ModelLoadError

if TYPE_CHECKING:
    from PIL import Image

FORMATS = ("PNG", "JPEG", "WEBP")
"""Encodings the server decodes; anything else is refused before its pixels are read."""
MAX_JPEG_SCANS = 100
"""Most scans a JPEG may have. A baseline JPEG has one per channel, a progressive one about 10
(libjpeg's and mozjpeg's defaults); each scan costs a pass over the whole image, so a crafted
file repeating a scan thousands of times would take seconds to minutes to decode."""
_JPEG_START_OF_SCAN = b"\xff\xda"
_SIXTEEN_BIT_GREY = {"I;16", "I;16B", "I;16L"}

VISION_EXTRA = 'image models need Pillow: pip install "mcdrop[vision]"'

_GREY_MODES = {"1", "L", "LA", "La", *_SIXTEEN_BIT_GREY}
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

    def largest_pixels(self, width: int, height: int) -> int:
        """Pixels of the largest image this pipeline makes from a ``width`` x ``height`` one
        (a resize can make it larger than the input): checked before anything is decoded."""
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

    def largest_pixels(self, width: int, height: int) -> int:
        """The resized image's pixels (or the input's, or the output's, whichever is larger)."""
        resized = width * height
        if self.resize is not None:
            new_width, new_height = resized_size(width, height, self.resize)
            resized = new_width * new_height
        return max(width * height, resized, self.size[0] * self.size[1])

    def describe(self) -> str:
        """E.g. ``grey, shorter side -> 36, centre crop 32x32, /255, mean [0.1] std [0.3]``."""
        steps = ["grey" if self.channels == 1 else "RGB"]
        if self.resize is not None:
            steps.append(f"shorter side -> {self.resize}")
        height, width = self.size
        steps.append(f"{'centre crop' if self.center_crop else 'resize to'} {height}x{width}")
        steps.append(f"/255, mean {list(self.mean)} std {list(self.std)}")
        return ", ".join(steps)


Decoder = Callable[[bytes, int, str, ImagePipeline], "Image.Image"]
"""Encoded bytes, ``max_pixels``, the field, the pipeline -> a decoded Pillow image in the
pipeline's channels (``L``/``RGB``, or ``F`` for a medical scan); InvalidImageError naming the
field. :func:`decode_for_pipeline` decodes PNG/JPEG/WebP; :mod:`app.engine.medical` adds
DICOM and NIfTI."""


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


def decode_image(
    data: bytes,
    max_pixels: int,
    field: str,
    pipeline: ImagePipeline | None = None,
    formats: Sequence[str] = FORMATS,
) -> Image.Image:
    """A fully decoded Pillow image; InvalidImageError (naming ``field``) when ``data`` is not a
    PNG, JPEG or WebP image, is corrupt, has more than ``max_pixels`` pixels (or would have after
    ``pipeline``'s resize), or is a JPEG of more than ``MAX_JPEG_SCANS`` scans. Every check reads
    the header only, so a decompression bomb or a scan bomb is refused before it is expanded."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data), formats=list(formats))
    except UnidentifiedImageError:
        raise InvalidImageError(field, f"is not a {', '.join(formats)} image") from None
    except (ValueError, TypeError) as exc:
        raise InvalidImageError(field, _unreadable_header(exc)) from None
    except Image.DecompressionBombError:
        raise InvalidImageError(field, _bomb(max_pixels)) from None
    except (OSError, SyntaxError) as exc:
        raise InvalidImageError(field, f"is not a readable image ({exc})") from None
    check_image_size(*image.size, max_pixels, field, pipeline)
    if image.format == "JPEG" and (scans := data.count(_JPEG_START_OF_SCAN)) > MAX_JPEG_SCANS:
        raise InvalidImageError(
            field, f"is a JPEG of {scans} scans, more than the limit of {MAX_JPEG_SCANS}"
        )
    try:
        image.load()
    except Image.DecompressionBombError:
        raise InvalidImageError(field, _bomb(max_pixels)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(field, f"is a corrupt {image.format} image ({exc})") from None
    return image


def _unreadable_header(exc: Exception) -> str:
    if "decompressed data too large" in str(exc).lower():
        # Pillow's own bound on a compressed text (zTXt, iTXt) or colour-profile (iCCP) chunk.
        return "is a PNG with a compressed text or colour-profile chunk too large to expand"
    return f"is not a {', '.join(FORMATS)} image"


def check_image_size(
    width: int, height: int, max_pixels: int, field: str, pipeline: ImagePipeline | None = None
) -> None:
    """InvalidImageError when a ``width`` x ``height`` image has more than ``max_pixels`` pixels,
    or would have after ``pipeline``'s resize; called on the header, before any pixel is read."""
    if width * height > max_pixels:
        raise InvalidImageError(
            field,
            f"is {width}x{height} = {width * height} pixels, more than the limit of "
            f"{max_pixels} (max_image_pixels)",
        )
    largest = pipeline.largest_pixels(width, height) if pipeline is not None else 0
    if largest > max_pixels:
        raise InvalidImageError(
            field,
            f"is {width}x{height}: resized for this model it would be {largest} pixels, more "
            f"than the limit of {max_pixels} (max_image_pixels)",
        )


def _bomb(max_pixels: int) -> str:
    # Pillow's own decompression-bomb check (twice Image.MAX_IMAGE_PIXELS) stays as a backstop.
    return f"has more pixels than the limit of {max_pixels} (max_image_pixels)"


def to_channels(image: Image.Image, channels: int, field: str) -> Image.Image:
    """``image`` as ``L`` (channels 1) or ``RGB`` (channels 3).

    Grey becomes RGB by repeating it, palettes and CMYK are converted, alpha is dropped. A colour
    image becomes grey only when its bands are equal (grey saved as RGB): a colour photo sent to
    a grey model is refused (InvalidImageError), not silently averaged. 16-bit images keep their
    top 8 bits, grey as colour (Pillow already reads a 16-bit RGB PNG so); other modes (32-bit
    integer, float) are refused.
    """
    mode = image.mode
    if mode not in _GREY_MODES | _COLOUR_MODES:
        raise InvalidImageError(
            field, f"has pixel mode {mode}; send 8- or 16-bit grey, RGB or RGBA images"
        )
    if mode in _SIXTEEN_BIT_GREY:
        image = _top_eight_bits(image)
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


def _top_eight_bits(image: Image.Image) -> Image.Image:
    """A 16-bit grey image as 8-bit grey: value >> 8, the rule Pillow applies to 16-bit RGB."""
    from PIL import Image

    pixels = np.asarray(image).astype(np.uint16)
    return Image.fromarray((pixels >> 8).astype(np.uint8), mode="L")


def resized_size(width: int, height: int, shorter_side: int) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to ``shorter_side``, aspect kept."""
    if height <= width:
        return max(1, round(width * shorter_side / height)), shorter_side
    return shorter_side, max(1, round(height * shorter_side / width))


def resize_and_crop(image: Image.Image, spec: ImagePreprocessing) -> Image.Image:
    """Shorter side -> ``spec.resize`` (if set), then the central ``spec.size`` crop (or a plain
    resize to ``spec.size`` without centre crop). Bilinear with antialiasing, as torchvision."""
    from PIL import Image

    height, width = spec.size
    if spec.resize is not None:
        image = image.resize(resized_size(*image.size, spec.resize), Image.Resampling.BILINEAR)
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


def decode_for_pipeline(
    data: bytes, max_pixels: int, field: str, pipeline: ImagePipeline
) -> Image.Image:
    """The default :data:`Decoder`: a PNG, JPEG or WebP image in the pipeline's channels."""
    return to_channels(decode_image(data, max_pixels, field, pipeline), pipeline.channels, field)


def images_to_tensor(
    rows: Sequence[Any],
    pipeline: ImagePipeline | None,
    max_rows: int,
    max_pixels: int,
    field: str = "inputs",
    decoder: Decoder = decode_for_pipeline,
) -> Tensor | None:
    """(B, C, H, W) float64 input rows when ``rows`` are encoded images; None when none is (the
    rows are float arrays). A mix of both, any bad image, or images for a model without an image
    ``pipeline`` is an InvalidInputError. ``decoder`` decodes each image."""
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
        checkpoint()  # between images: a request past its deadline stops decoding here
        image = decoder(data, max_pixels, where, pipeline)
        try:
            tensors.append(pipeline(image))
        except Exception as exc:  # a processor's own checks (odd sizes) are the client's problem
            raise InvalidImageError(where, f"cannot be preprocessed: {exc}") from None
    return torch.stack(tensors).to(torch.float64)
