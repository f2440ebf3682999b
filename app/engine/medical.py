"""Medical scans as image inputs: DICOM files and 2D NIfTI slices, beside PNG/JPEG/WebP.

A card lists the encodings its model takes (``input: {type: image, formats: [png, dicom,
nifti], window: {center: 40, width: 400}, frame: 0, slice: 12}``). Each request image is told
apart by its content, never by a name: ``DICM`` at byte 128 is DICOM, a NIfTI-1/2 header
(plain or gzipped) is NIfTI, anything else goes to Pillow (when the card takes PNG, JPEG or
WebP). A scan becomes one grey plane of values in [0, 1] (:func:`apply_window`), handed to the
card's preprocessing as a 32-bit float Pillow image (``F``, values x 255, so the pipeline's
``/255`` gives the windowed value back without 8-bit rounding).

Patient data: the decoders read only the pixel data and the few attributes that turn it into
numbers (size, frames, rescale, window, photometric interpretation, transfer syntax); errors
never quote a value read from the file (only sizes, counts and the name of a known transfer
syntax), pydicom's warnings are silenced and its logger does not reach the service's logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from app.engine.images import (
    FORMATS,
    ImagePipeline,
    InvalidImageError,
    decode_image,
    to_channels,
)
from app.errors import ModelLoadError

if TYPE_CHECKING:
    from PIL import Image

Format = Literal["png", "jpeg", "webp", "dicom", "nifti"]
MEDICAL_FORMATS: tuple[Format, ...] = ("dicom", "nifti")
PILLOW_FORMATS: tuple[Format, ...] = ("png", "jpeg", "webp")
MEDICAL_EXTRA = 'DICOM and NIfTI inputs need pydicom and nibabel: pip install "mcdrop[scans]"'
_DICOM_MAGIC_AT, _DICOM_MAGIC = 128, b"DICM"


@dataclass(frozen=True)
class Window:
    """A display window: values ``center - width/2 .. center + width/2`` map to 0 .. 1."""

    center: float
    width: float


@dataclass(frozen=True)
class ScanOptions:
    """What the card says about scans: the window (else the file's, else the plane's range),
    the frame of a multi-frame DICOM and the slice of a 3D NIfTI volume (along its third
    axis)."""

    window: Window | None = None
    frame: int | None = None
    slice: int | None = None


def apply_window(values: np.ndarray, window: Window | None) -> np.ndarray:
    """(H, W) float64 in [0, 1]: DICOM's linear VOI function (PS3.3 C.11.2.1.2) with output
    range [0, 1], for c = center, w = width (w >= 1):

    ``y = 0`` for ``x <= c - 0.5 - (w - 1)/2``, ``1`` for ``x > c - 0.5 + (w - 1)/2``, else
    ``(x - (c - 0.5)) / (w - 1) + 0.5``. Without a window, the plane's own range maps to [0, 1]
    (a constant plane gives 0)."""
    values = values.astype(np.float64, copy=False)
    if window is None:
        low, high = float(values.min()), float(values.max())
        if high <= low:
            return np.zeros_like(values)
        return (values - low) / (high - low)
    if window.width <= 1:
        return (values > window.center - 0.5).astype(np.float64)
    scaled = (values - (window.center - 0.5)) / (window.width - 1) + 0.5
    return np.clip(scaled, 0.0, 1.0)


def is_dicom(data: bytes) -> bool:
    """A DICOM Part 10 file: the 128-byte preamble, then ``DICM``."""
    return data[_DICOM_MAGIC_AT : _DICOM_MAGIC_AT + 4] == _DICOM_MAGIC


def require_medical(formats: tuple[Format, ...]) -> None:
    """ModelLoadError naming the extra when a card takes DICOM or NIfTI and the library for it
    is missing."""
    try:
        if "dicom" in formats:
            import pydicom  # noqa: F401
        if "nifti" in formats:
            import nibabel  # noqa: F401
    except ImportError:
        raise ModelLoadError(MEDICAL_EXTRA) from None


@dataclass(frozen=True)
class ScanDecoder:
    """An :data:`app.engine.images.Decoder` taking the card's ``formats``."""

    formats: tuple[Format, ...]
    options: ScanOptions = ScanOptions()

    def __call__(
        self, data: bytes, max_pixels: int, field: str, pipeline: ImagePipeline
    ) -> Image.Image:
        """The decoded image in the pipeline's channels; 4xx naming ``field``."""
        from app.engine import dicom, nifti

        if is_dicom(data) and "dicom" in self.formats:
            plane = dicom.decode_dicom(data, self.options, max_pixels, field, pipeline)
        elif "nifti" in self.formats and nifti.is_nifti(data):
            plane = nifti.decode_nifti(data, self.options, max_pixels, field, pipeline)
        elif self.pillow_formats:
            image = decode_image(data, max_pixels, field, pipeline, formats=self.pillow_formats)
            return to_channels(image, pipeline.channels, field)
        else:
            raise InvalidImageError(field, f"is not a {self.described} file")
        return plane_image(plane)

    def encode(self, pixels: np.ndarray) -> bytes:
        """(H, W) uint8 ``pixels`` as a file of the first scan format (probe examples)."""
        from app.engine import dicom, nifti

        if "dicom" in self.formats:
            return dicom.encode_dicom(pixels)
        return nifti.encode_nifti(pixels)

    @property
    def pillow_formats(self) -> tuple[str, ...]:
        """The card's formats Pillow decodes (``PNG``, ``JPEG``, ``WEBP``)."""
        return tuple(f for f in FORMATS if f.lower() in self.formats)

    @property
    def described(self) -> str:
        """E.g. ``PNG, DICOM or NIfTI``."""
        names = [{"dicom": "DICOM", "nifti": "NIfTI"}.get(f, f.upper()) for f in self.formats]
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def plane_image(plane: np.ndarray) -> Image.Image:
    """A (H, W) plane in [0, 1] as a Pillow ``F`` image of values x 255 (what an 8-bit image's
    pixels are before the pipeline's ``/255``)."""
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(plane * 255.0, dtype=np.float32))
