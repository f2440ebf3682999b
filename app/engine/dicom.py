"""DICOM files -> one windowed grey plane, through pydicom (``mcdrop[scans]``).

Only the pixel data and the attributes that make numbers of it are read: Rows, Columns,
NumberOfFrames, SamplesPerPixel, PhotometricInterpretation (MONOCHROME1 is inverted),
RescaleSlope/RescaleIntercept (stored value x slope + intercept, e.g. Hounsfield units),
WindowCenter/WindowWidth (when the card gives no window) and the transfer syntax. Sizes are
checked before the pixel data is decoded, and only the named frame of a multi-frame file is
decoded. No error, log line or warning quotes a value read from the file: the dataset is
dropped once its plane is taken.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from app.engine.images import ImagePipeline, InvalidImageError, check_image_size
from app.engine.medical import ScanOptions, Window, apply_window

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

GREY = ("MONOCHROME1", "MONOCHROME2")


def decode_dicom(
    data: bytes, options: ScanOptions, max_pixels: int, field: str, pipeline: ImagePipeline
) -> np.ndarray:
    """(H, W) float64 in [0, 1]: the frame rescaled, windowed and, for MONOCHROME1, inverted;
    InvalidImageError naming ``field`` for an unreadable, colour, too large or undecodable file
    (a compressed transfer syntax whose decoder is not installed)."""
    _quiet_pydicom()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = _read(data, field)
        frame = _checked_frame(dataset, options, max_pixels, field, pipeline)
        _check_decoder(dataset, field)
        stored = _pixels(dataset, frame, field)
        values = stored * _number(dataset, "RescaleSlope", 1.0)
        values += _number(dataset, "RescaleIntercept", 0.0)
        plane = apply_window(values, options.window or _file_window(dataset))
        if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
            plane = 1.0 - plane
    return plane


def _quiet_pydicom() -> None:
    # pydicom's messages may quote element values (a patient's name among them).
    logging.getLogger("pydicom").propagate = False


def _read(data: bytes, field: str) -> Dataset:
    from pydicom import dcmread

    try:
        return dcmread(io.BytesIO(data))
    except Exception:  # any parse failure; its message may quote the file's values
        raise InvalidImageError(field, "is not a readable DICOM file") from None


def _checked_frame(
    dataset: Dataset, options: ScanOptions, max_pixels: int, field: str, pipeline: ImagePipeline
) -> int | None:
    """The frame index to decode (None: a single-frame file), after the size checks."""
    if "PixelData" not in dataset:
        raise InvalidImageError(field, "is a DICOM file without pixel data")
    rows, columns = _count(dataset, "Rows", field), _count(dataset, "Columns", field)
    if _number(dataset, "SamplesPerPixel", 1.0) != 1 or (
        dataset.get("PhotometricInterpretation") not in GREY
    ):
        raise InvalidImageError(
            field, "is a colour DICOM image; send MONOCHROME1 or MONOCHROME2 (grey) images"
        )
    check_image_size(columns, rows, max_pixels, field, pipeline)
    frames = _count(dataset, "NumberOfFrames", field) if "NumberOfFrames" in dataset else 1
    if frames == 1 and options.frame in (None, 0):
        return None
    if options.frame is None:
        raise InvalidImageError(
            field, f"has {frames} frames; the model card's input.frame names the one to read"
        )
    if options.frame >= frames:
        raise InvalidImageError(
            field, f"has {frames} frames, no frame {options.frame} (input.frame)"
        )
    return options.frame


def _check_decoder(dataset: Dataset, field: str) -> None:
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import UID

    syntax = UID(str(dataset.file_meta.get("TransferSyntaxUID", "")))
    if not syntax.is_transfer_syntax:
        raise InvalidImageError(field, "is a DICOM file with no known transfer syntax")
    if not syntax.is_compressed:
        return
    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:
        available = False
    if not available:
        raise InvalidImageError(
            field,
            f"is compressed with {syntax.name}, and no decoder for it is installed on this "
            "server; send it uncompressed (Explicit VR Little Endian) or install a decoder "
            "(pylibjpeg with its plugins, or python-gdcm)",
        )


def _pixels(dataset: Dataset, frame: int | None, field: str) -> np.ndarray:
    from pydicom.pixels.utils import pixel_array

    try:
        array = pixel_array(dataset, index=frame, raw=True)
    except Exception:  # a truncated or corrupt pixel data element
        raise InvalidImageError(field, "has pixel data that cannot be decoded") from None
    plane = np.asarray(array, dtype=np.float64)
    if plane.ndim != 2:
        raise InvalidImageError(field, "does not decode to one grey plane")
    return plane


def _count(dataset: Dataset, keyword: str, field: str) -> int:
    value = _number(dataset, keyword, 0.0)
    if not (value >= 1 and float(value).is_integer()):
        raise InvalidImageError(field, f"has no valid {keyword}")
    return int(value)


def _number(dataset: Dataset, keyword: str, default: float) -> float:
    """A numeric attribute (the first of a multi-valued one), ``default`` when absent or not a
    finite number."""
    value: Any = dataset.get(keyword, default)
    if value is None:
        return default
    if not isinstance(value, int | float | str | bytes) and hasattr(value, "__getitem__"):
        value = value[0] if len(value) else default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _file_window(dataset: Dataset) -> Window | None:
    """The file's first WindowCenter/WindowWidth pair; None when absent or not positive."""
    center = _number(dataset, "WindowCenter", math.nan)
    width = _number(dataset, "WindowWidth", math.nan)
    if math.isnan(center) or math.isnan(width) or width <= 0:
        return None
    return Window(center, width)


def encode_dicom(pixels: np.ndarray) -> bytes:
    """A minimal uncompressed MONOCHROME2 DICOM file of (H, W) uint8 ``pixels`` with no patient
    attributes (the kind's probe, the demo's samples)."""
    from pydicom import Dataset as DicomDataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[pixels.tobytes().hex()])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = DicomDataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "OT"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    dataset.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
