"""NIfTI-1/2 images (``.nii``, or gzipped ``.nii.gz``) -> one windowed 2D slice, through
nibabel (``mcdrop[scans]``).

A 2D image is taken as it is; a 3D volume needs the card's ``input.slice``, an index along its
third axis (trailing axes of length 1 are ignored). The slice's voxel ``(i, j)`` becomes the
image's pixel at column ``i``, row ``j`` (no reorientation to an anatomical frame), its values
scaled by the header's ``scl_slope``/``scl_inter``. The window is the card's, else the header's
``cal_min``/``cal_max`` when set, else the slice's own range. Sizes come from the header and
are checked before any voxel is read; a gzipped file is expanded to at most what its header
says (and never past ``max_pixels`` x 8 bytes), so a gzip bomb stops early.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np

from app.engine.images import ImagePipeline, InvalidImageError, check_image_size
from app.engine.medical import ScanOptions, Window, apply_window

_GZIP_MAGIC = b"\x1f\x8b"
_HEADER_SIZES = {348: (344, (b"n+1\x00",)), 540: (4, (b"n+2\x00",))}
"""sizeof_hdr -> (offset of the magic, single-file magics) for NIfTI-1 and NIfTI-2."""
_LARGEST_HEADER = 540
_BYTES_PER_PIXEL_BOUND = 8


def is_nifti(data: bytes) -> bool:
    """A single-file NIfTI-1 or NIfTI-2 image (``n+1`` / ``n+2``), plain or gzipped."""
    head = _gunzip(data, _LARGEST_HEADER) if data[:2] == _GZIP_MAGIC else data[:_LARGEST_HEADER]
    return _header_kind(head) is not None


def decode_nifti(
    data: bytes, options: ScanOptions, max_pixels: int, field: str, pipeline: ImagePipeline
) -> np.ndarray:
    """(H, W) float64 in [0, 1]: the slice, scaled and windowed; InvalidImageError naming
    ``field`` for a corrupt or too large file, a missing or out-of-range slice, or non-finite
    voxels."""
    if data[:2] == _GZIP_MAGIC:
        data = _gunzip(data, max_pixels * _BYTES_PER_PIXEL_BOUND, field)
    image = _image(data, field)
    shape = _plane_shape(image.shape, field)
    check_image_size(shape[0], shape[1], max_pixels, field, pipeline)
    index = _slice_index(shape, options, field)
    try:
        voxels = np.asarray(image.dataobj[(slice(None), slice(None), *index)], dtype=np.float64)
    except Exception:  # data shorter than the header says, an unknown datatype
        raise InvalidImageError(field, "is a NIfTI file whose voxels cannot be read") from None
    plane = voxels.reshape(shape[:2]).T
    if not np.isfinite(plane).all():
        raise InvalidImageError(field, "has voxels that are not finite numbers (NaN or inf)")
    return apply_window(plane, options.window or _header_window(image.header))


def _header_kind(head: bytes) -> int | None:
    """348 or 540 (NIfTI-1, NIfTI-2) for a single-file header in either byte order."""
    if len(head) < 348:
        return None
    for order in "<>":
        (size,) = struct.unpack_from(f"{order}i", head, 0)
        if size in _HEADER_SIZES and len(head) >= size:
            offset, magics = _HEADER_SIZES[size]
            if head[offset : offset + 4] in magics:
                return int(size)
    return None


def _gunzip(data: bytes, limit: int, field: str = "input") -> bytes:
    """At most ``limit`` bytes of the gzipped ``data``; past it, a 4xx (a ``limit`` of the
    header's size only peeks)."""
    expander = zlib.decompressobj(wbits=31)
    try:
        expanded = expander.decompress(data, limit)
    except zlib.error:
        raise InvalidImageError(field, "is not a readable gzip file") from None
    if limit > _LARGEST_HEADER and expander.unconsumed_tail:
        raise InvalidImageError(
            field,
            f"expands to more than {limit} bytes (max_image_pixels x {_BYTES_PER_PIXEL_BOUND})",
        )
    return expanded


def _image(data: bytes, field: str) -> Any:
    import nibabel

    kind = _header_kind(data[:_LARGEST_HEADER])
    cls = nibabel.Nifti1Image if kind == 348 else nibabel.Nifti2Image
    try:
        return cls.from_bytes(data)
    except Exception:
        raise InvalidImageError(field, "is not a readable NIfTI file") from None


def _plane_shape(shape: tuple[int, ...], field: str) -> tuple[int, ...]:
    """The shape without trailing axes of length 1 (at least 2 axes); 2D or 3D only."""
    dims = list(shape)
    while len(dims) > 2 and dims[-1] == 1:
        dims.pop()
    if len(dims) not in (2, 3) or min(dims) < 1:
        raise InvalidImageError(
            field, f"is a NIfTI image of shape {list(shape)}; send a 2D image or a 3D volume"
        )
    return tuple(dims)


def _slice_index(shape: tuple[int, ...], options: ScanOptions, field: str) -> tuple[int, ...]:
    """The index past the first two axes: () for 2D, (k,) for slice k of a volume."""
    if len(shape) == 2 or (shape[2] == 1 and options.slice in (None, 0)):
        return (0,) * (len(shape) - 2)
    if options.slice is None:
        raise InvalidImageError(
            field,
            f"is a volume of {shape[2]} slices; the model card's input.slice names the one to read",
        )
    if options.slice >= shape[2]:
        raise InvalidImageError(
            field, f"has {shape[2]} slices, no slice {options.slice} (input.slice)"
        )
    return (options.slice,)


def _header_window(header: Any) -> Window | None:
    low, high = float(header["cal_min"]), float(header["cal_max"])
    if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        return None
    return Window(center=(low + high) / 2 + 0.5, width=high - low + 1)


def encode_nifti(pixels: np.ndarray) -> bytes:
    """A NIfTI-1 file of one (H, W) uint8 image (stored as voxels (W, H), see the module
    docstring): the kind's probe when a card takes no PNG."""
    import nibabel

    voxels = np.ascontiguousarray(pixels.T, dtype=np.uint8)
    image = nibabel.Nifti1Image(voxels, np.eye(4))  # type: ignore[no-untyped-call]
    image.header["cal_min"], image.header["cal_max"] = 0, 255
    return bytes(image.to_bytes())
