"""The image input kind: encoded images (PNG, JPEG, WebP) decoded and preprocessed into
(channels, H, W) rows by the card's recipe or the folder's image processor; float rows of that
shape are taken too.

v1: ``{"b64": ...}`` rows, or ``image`` files of a multipart form. v2: a ``BYTES`` tensor
[B] (or [B, 1]), base64 strings (or ``{"b64"}`` objects) as JSON data, length-prefixed bytes as
binary data; or an FP32/FP64 tensor of preprocessed rows.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from app.engine.images import (
    FORMATS,
    Decoder,
    ImagePipeline,
    decode_for_pipeline,
    images_to_tensor,
)
from app.engine.inputs import check_input_range, rows_to_tensor
from app.engine.medical import ScanDecoder
from app.errors import InvalidTensorError
from app.inputs.base import (
    INPUT_NAME,
    FileInput,
    InputDescription,
    InputKind,
    Rows,
    TensorInfo,
    WireTensor,
    check_row_count,
    only_input,
)
from app.inputs.wire import BYTES, encoded_elements, numeric_array

IMAGE_FIELD = "image"
"""The multipart/form-data field whose files are image rows (``curl -F image=@a.png``)."""
SUFFIXES = {
    "png": (".png",),
    "jpeg": (".jpg", ".jpeg"),
    "webp": (".webp",),
    "dicom": (".dcm", ".dicom"),
    "nifti": (".nii", ".nii.gz"),
}
"""A format's file name endings (what ``mcdrop predict`` picks from a folder; the server tells
formats apart by content, never by name)."""
PROBE_SIZE = (48, 64)
"""(H, W) of the generated probe images of a processor that sets its own size."""


class ImageKind(InputKind):
    """Encoded images through one image pipeline."""

    def __init__(
        self,
        pipeline: ImagePipeline,
        shape: list[int],
        value_limit: float,
        max_pixels: int,
        probe_size: tuple[int, int] | None = None,
        scans: ScanDecoder | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.scans = scans
        """DICOM/NIfTI (and the card's other formats); None: PNG, JPEG, WebP."""
        self.decoder: Decoder = scans or decode_for_pipeline
        self.shape = list(shape)
        """(channels, H, W) of a preprocessed row."""
        self.value_limit = value_limit
        self.max_pixels = max_pixels
        self.probe_size = probe_size or PROBE_SIZE

    def rows(self, rows: Rows, max_rows: int, field: str = "inputs") -> Tensor:
        """(B, C, H, W) float64 rows from encoded images, or float rows of that shape."""
        check_row_count(rows, max_rows, field)
        if not hasattr(rows, "dtype"):
            images = images_to_tensor(
                rows, self.pipeline, max_rows, self.max_pixels, field, self.decoder
            )
            if images is not None:
                return images
        values = rows_to_tensor(rows, self.shape, max_rows, field)
        check_input_range(values, self.value_limit, field)
        return values

    def v2_rows(self, tensors: Mapping[str, WireTensor]) -> Rows:
        """Encoded images of a BYTES tensor, or the array of a float tensor of rows."""
        tensor = only_input(tensors)
        if tensor.datatype != BYTES:
            expected = [-1, *self.shape]
            if tensor.shape[1:] != self.shape or len(tensor.shape) != len(expected):
                raise InvalidTensorError(
                    f"{tensor.where}: shape {tensor.shape} does not match {expected}"
                )
            return numeric_array(tensor)
        return encoded_elements(tensor, "images")

    def describe(self) -> InputDescription:
        preprocessing = self.pipeline.describe()
        channels = "grey" if self.pipeline.channels == 1 else "RGB"
        return InputDescription(
            kind="image",
            widget="image",
            shape=self.shape,
            dtype="float32",
            summary=f"{channels} image ({self._formats()}) -> {self.shape}: {preprocessing}",
            preprocessing=preprocessing,
            extra={"input_type": "image", "preprocessing": preprocessing, **self._scan_extra()},
            files=self._files(),
        )

    def _files(self) -> FileInput:
        formats = self.scans.formats if self.scans else tuple(f.lower() for f in FORMATS)
        suffixes = tuple(suffix for name in formats for suffix in SUFFIXES[name])
        described = self.scans.described if self.scans else "PNG, JPEG or WebP"
        return FileInput(IMAGE_FIELD, suffixes, described)

    def v2_inputs(self) -> list[TensorInfo]:
        """Encoded images, with what is done to them."""
        parameters = {
            "content_type": "image",
            "formats": list(self.scans.formats) if self.scans else [f.lower() for f in FORMATS],
            "encoding": "base64 strings in JSON data; length-prefixed bytes as binary data",
            "preprocessing": self.pipeline.describe(),
            "also_accepts": f"FP32 [-1, {', '.join(map(str, self.shape))}] preprocessed rows",
        }
        return [TensorInfo(INPUT_NAME, BYTES, [-1], parameters)]

    def _formats(self) -> str:
        return self.scans.described if self.scans else "PNG, JPEG, WebP"

    def _scan_extra(self) -> dict[str, Any]:
        if self.scans is None:
            return {}
        options = self.scans.options
        window = options.window
        return {
            "formats": list(self.scans.formats),
            "window": None if window is None else {"center": window.center, "width": window.width},
            "frame": options.frame,
            "slice": options.slice,
        }

    def example_rows(self, rows: int) -> Rows:
        """Generated PNG images of the probe size in the pipeline's channels (DICOM or NIfTI
        grey scans when the card takes no PNG, JPEG or WebP)."""
        from PIL import Image

        generator = torch.Generator().manual_seed(0)
        channels = self.pipeline.channels
        height, width = self.probe_size
        pixels = (torch.rand((rows, height, width, 3), generator=generator) * 255).to(torch.uint8)
        if self.scans is not None and not self.scans.pillow_formats:
            return [self.scans.encode(array[..., 0]) for array in pixels.numpy()]
        encoded = []
        for array in pixels.numpy():
            image = Image.fromarray(array, mode="RGB")
            if channels == 1:
                image = image.convert("L")
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            encoded.append(buffer.getvalue())
        return encoded
