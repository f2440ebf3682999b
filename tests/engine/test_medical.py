"""DICOM and NIfTI decoding against hand-computed planes: rescale, windows, MONOCHROME1,
frames, slices; hostile files refused with a 4xx that quotes no value read from the file."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
from PIL import Image

from app.engine.images import ImagePreprocessing, InvalidImageError
from app.engine.medical import ScanDecoder, ScanOptions, Window, apply_window
from tests.scans import SECRETS, dicom_file, nifti_file

LIMIT = 1_000_000
SPEC = ImagePreprocessing(channels=1, size=(2, 3), center_crop=False)
STORED = np.array([[0, 100, 200], [300, 400, 1000]], dtype=np.uint16)


def decode(data: bytes, limit: int = LIMIT, **options: object) -> np.ndarray:
    """The decoded plane in [0, 1] (the ``F`` image's values / 255)."""
    decoder = ScanDecoder(("png", "dicom", "nifti"), ScanOptions(**options))  # type: ignore[arg-type]
    image = decoder(data, limit, "inputs[0]", SPEC)
    assert image.mode == ("F" if image.mode != "L" else "L")
    return np.asarray(image, dtype=np.float64) / 255.0


def refused(data: bytes, limit: int = LIMIT, **options: object) -> str:
    with pytest.raises(InvalidImageError) as error:
        decode(data, limit, **options)
    message = error.value.message
    assert message.startswith("inputs[0]: ")
    assert not any(secret in message for secret in SECRETS), message
    return message


def test_the_dicom_window_formula_by_hand() -> None:
    values = np.array([[-1000.0, 39.5, 40.0, 240.0]])
    # c = 40, w = 401: y = (x - 39.5) / 400 + 0.5, clipped; below c - 0.5 - 200 is 0
    expected = np.array([[0.0, 0.5, 0.50125, 1.0]])
    assert np.allclose(apply_window(values, Window(40, 401)), expected)
    assert np.array_equal(apply_window(values, None), (values + 1000) / 1240)
    assert np.array_equal(apply_window(np.full((2, 2), 7.0), None), np.zeros((2, 2)))


def test_rescale_then_the_file_window_then_the_cards() -> None:
    # stored x 2 - 1024: [-1024, -824, -624, -424, -224, 976]
    data = dicom_file(STORED, slope=2, intercept=-1024, window=(-524, 201))
    hounsfield = STORED * 2.0 - 1024
    assert np.allclose(decode(data), apply_window(hounsfield, Window(-524, 201)), atol=1e-6)
    card = Window(0, 2001)
    assert np.allclose(decode(data, window=card), apply_window(hounsfield, card), atol=1e-6)
    no_window = dicom_file(STORED)
    assert np.allclose(decode(no_window), STORED / 1000.0, atol=1e-6)


def test_monochrome1_is_inverted() -> None:
    two = decode(dicom_file(STORED, photometric="MONOCHROME2"))
    one = decode(dicom_file(STORED, photometric="MONOCHROME1"))
    assert np.allclose(one, 1.0 - two, atol=1e-6)
    assert one[0, 0] == pytest.approx(1.0) and one[1, 2] == pytest.approx(0.0)


def test_signed_pixels_keep_their_sign() -> None:
    stored = np.array([[-1000, 0, 1000], [-500, 500, 0]], dtype=np.int16)
    plane = decode(dicom_file(stored, signed=True), window=Window(0.5, 2001))
    assert np.allclose(plane, (stored + 1000) / 2000.0, atol=1e-6)


def test_a_named_frame_of_a_multi_frame_file() -> None:
    frames = np.stack([STORED, STORED[::-1], STORED * 0 + 5])
    data = dicom_file(frames)
    assert np.allclose(decode(data, frame=1), STORED[::-1] / 1000.0, atol=1e-6)
    assert "has 3 frames; the model card's input.frame" in refused(data)
    assert "no frame 3" in refused(data, frame=3)


def test_a_compressed_syntax_without_decoder_is_refused_by_name() -> None:
    from pydicom.uid import JPEGLSLossless

    message = refused(dicom_file(STORED, syntax=JPEGLSLossless))
    assert "JPEG-LS Lossless Image Compression" in message and "no decoder" in message


def test_hostile_dicom_files() -> None:
    data = dicom_file(STORED)
    assert "without pixel data" in refused(data[:140])
    garbage = bytes(128) + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + bytes(64)
    assert "DICOM file" in refused(garbage)
    assert "pixel data that cannot be decoded" in refused(data[:-4])
    assert "6 pixels, more than the limit of 5" in refused(data, limit=5)
    colour = dicom_file(STORED, photometric="RGB")
    assert "colour DICOM image" in refused(colour)


def test_nifti_2d_3d_slices_scaled_and_windowed() -> None:
    voxels = STORED.T.astype(np.int16)  # voxel (i, j) is pixel (row j, column i)
    assert np.allclose(decode(nifti_file(voxels)), STORED / 1000.0, atol=1e-6)
    volume = np.stack([voxels, voxels * 0 + 1, voxels[::-1]], axis=2)
    data = nifti_file(volume, compressed=True)
    assert np.allclose(decode(data, slice=2), STORED[:, ::-1] / 1000.0, atol=1e-6)
    assert "volume of 3 slices; the model card's input.slice" in refused(data)
    assert "no slice 5" in refused(data, slice=5)
    scaled = nifti_file(voxels, slope=0.5, intercept=10, cal=(10, 510))
    expected = apply_window(STORED * 0.5 + 10, Window(260.5, 501))
    assert np.allclose(decode(scaled), expected, atol=1e-6)
    assert np.allclose(decode(nifti_file(voxels, version=2)), STORED / 1000.0, atol=1e-6)


def test_hostile_nifti_files() -> None:
    voxels = np.zeros((20, 20), dtype=np.float32)
    assert "6 pixels" in refused(nifti_file(STORED.T.astype(np.int16)), limit=5)
    bomb = gzip.compress(nifti_file(voxels) + bytes(10_000_000), mtime=0)
    assert "expands to more than 8000 bytes" in refused(bomb, limit=1000)
    nan = voxels.copy()
    nan[3, 4] = np.nan
    assert "not finite" in refused(nifti_file(nan))
    assert "cannot be read" in refused(nifti_file(voxels)[:-100])
    four_d = np.zeros((4, 4, 2, 3), dtype=np.int16)
    assert "shape [4, 4, 2, 3]" in refused(nifti_file(four_d))


def test_other_files_go_to_pillow_or_are_refused() -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.full((2, 3), 51, dtype=np.uint8)).save(buffer, format="PNG")
    assert np.allclose(decode(buffer.getvalue()), 0.2)
    only_scans = ScanDecoder(("dicom", "nifti"))
    with pytest.raises(InvalidImageError, match=r"^inputs\[0\]: is not a DICOM or NIfTI file"):
        only_scans(buffer.getvalue(), LIMIT, "inputs[0]", SPEC)
    with pytest.raises(InvalidImageError, match="is not a PNG image"):
        ScanDecoder(("png", "nifti"))(dicom_file(STORED), LIMIT, "inputs[0]", SPEC)


def test_a_compressed_syntax_with_a_decoder_is_decoded() -> None:
    from pydicom import dcmread
    from pydicom.uid import RLELossless

    dataset = dcmread(io.BytesIO(dicom_file(STORED)))
    dataset.compress(RLELossless)
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    assert np.allclose(decode(buffer.getvalue()), STORED / 1000.0, atol=1e-6)


def test_the_first_of_several_file_windows_is_used() -> None:
    from pydicom import dcmread

    dataset = dcmread(io.BytesIO(dicom_file(STORED)))
    dataset.WindowCenter, dataset.WindowWidth = [500, 40], [1001, 80]
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    expected = apply_window(STORED.astype(np.float64), Window(500, 1001))
    assert np.allclose(decode(buffer.getvalue()), expected, atol=1e-6)
