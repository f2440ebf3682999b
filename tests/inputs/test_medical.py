"""The image kind with DICOM and NIfTI formats keeps the input-kind contract: DICOM and NIfTI
rows (v1 b64, v2 BYTES JSON and binary) give the same tensor, a bad scan is refused naming its
row, and a kind taking only scans probes with scans of its own format."""

from __future__ import annotations

import base64
import io
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from app.engine.images import ImagePreprocessing
from app.engine.medical import ScanDecoder, ScanOptions, Window, is_dicom
from app.engine.nifti import is_nifti
from app.inputs.base import INPUT_NAME, Rows, WireTensor
from app.inputs.image import ImageKind
from app.registry.card_inputs import ImageInputSpec
from tests.inputs.kind_contract import KindCase, check_input_kind
from tests.inputs.test_image import _png
from tests.scans import dicom_file, nifti_file

LIMIT = float(torch.finfo(torch.float32).max)
SPEC = ImagePreprocessing(channels=1, size=(8, 6), center_crop=False)


def _kind(*formats: str) -> ImageKind:
    scans = ScanDecoder(formats, ScanOptions(window=Window(128, 256), slice=1))  # type: ignore[arg-type]
    return ImageKind(SPEC, [1, 8, 6], LIMIT, 1_000_000, probe_size=(8, 6), scans=scans)


def _in_domain(test: object) -> object:
    def check(rows: Rows, probe: Tensor) -> bool:
        scans = all(test(row) for row in rows)  # type: ignore[operator]
        inside = bool(0 <= probe.min() <= probe.max() <= 1)
        return scans and probe.shape[1:] == (1, 8, 6) and inside

    return check


def _case(kind: ImageKind, files: list[bytes], bad: bytes, test: object) -> KindCase:
    b64 = [base64.b64encode(data).decode() for data in files]
    raw = b"".join(struct.pack("<I", len(data)) + data for data in files)
    return KindCase(
        kind=kind,
        rows=[{"b64": value} for value in b64],
        v2_json=WireTensor(INPUT_NAME, "BYTES", [2], data=b64),
        v2_binary=WireTensor(INPUT_NAME, "BYTES", [2], binary_size=len(raw), binary=raw),
        bad_rows=[{"b64": b64[0]}, {"b64": base64.b64encode(bad).decode()}],
        bad_field="inputs[1]",
        in_domain=_in_domain(test),  # type: ignore[arg-type]
        describes="image",
    )


def _pixels(seed: int, shape: tuple[int, ...] = (8, 6)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint16)


def test_dicom_rows_keep_the_contract() -> None:
    files = [dicom_file(_pixels(0)), dicom_file(_pixels(1), photometric="MONOCHROME1")]
    bad = dicom_file(np.stack([_pixels(2)] * 2))  # two frames, the kind names none
    check_input_kind(_case(_kind("dicom"), files, bad, is_dicom))


def test_nifti_rows_keep_the_contract() -> None:
    volume = np.stack([_pixels(3, (6, 8)), _pixels(4, (6, 8))], axis=2).astype(np.int16)
    files = [nifti_file(volume), nifti_file(_pixels(5, (6, 8)).astype(np.int16), compressed=True)]
    bad = nifti_file(np.zeros((6, 8, 1, 2), dtype=np.int16))
    check_input_kind(_case(_kind("nifti"), files, bad, is_nifti))


def test_a_scan_is_the_png_of_the_same_pixels() -> None:
    """Window (128, 256) maps a stored value x to x / 255: a DICOM, a NIfTI and a PNG of the
    same 8-bit pixels are the same row (to float32 rounding)."""
    kind = _kind("png", "dicom", "nifti")
    png = _png(9, size=(6, 8))
    pixels = np.asarray(Image.open(io.BytesIO(png)))
    volume = np.stack([pixels.T, pixels.T], axis=2).astype(np.int16)
    rows = kind.rows([png, dicom_file(pixels.astype(np.uint16)), nifti_file(volume)], 3)
    assert torch.allclose(rows[1], rows[0], atol=1e-6) and torch.allclose(
        rows[2], rows[0], atol=1e-6
    )


def test_the_description_names_the_formats_and_the_window() -> None:
    described = _kind("png", "dicom").describe()
    assert "PNG or DICOM" in described.summary
    assert described.extra["formats"] == ["png", "dicom"]
    assert described.extra["window"] == {"center": 128, "width": 256}


def test_card_scan_options_need_a_scan_format() -> None:
    with pytest.raises(ValueError, match=r"input\.window needs 'dicom' or 'nifti'"):
        ImageInputSpec(type="image", channels=1, size=(8, 8), window={"center": 1, "width": 2})
    spec = ImageInputSpec(type="image", channels=1, size=(8, 8), formats=["dicom"], frame=2)
    decoder = spec.scan_decoder()
    assert decoder is not None and decoder.options.frame == 2
    assert ImageInputSpec(type="image", channels=1, size=(8, 8)).scan_decoder() is None
