"""DICOM and NIfTI files built in the tests with pydicom and nibabel, carrying patient data
(``PATIENT_NAME``, ``PATIENT_ID``) that must never reach a response, log line or error."""

from __future__ import annotations

import gzip
import io
from collections.abc import Sequence

import numpy as np

PATIENT_NAME = "Doe^Jane^SECRETNAME"
PATIENT_ID = "MRN-7781234"
SECRETS = ("SECRETNAME", "Doe^Jane", PATIENT_ID)


def dicom_file(
    frames: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
    syntax: str | None = None,
    bits: int = 16,
    signed: bool = False,
) -> bytes:
    """A DICOM file of ``frames`` ((H, W) or (F, H, W) stored values) with a patient's name and
    id; ``syntax`` a compressed transfer syntax UID (its pixel data is then fake JPEG-LS)."""
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["test"])
    meta.TransferSyntaxUID = UID(syntax) if syntax else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.Modality = PATIENT_NAME, PATIENT_ID, "CT"
    ds.InstitutionName = "SECRETNAME General Hospital"
    stack = frames if frames.ndim == 3 else frames[None]
    if frames.ndim == 3:
        ds.NumberOfFrames = stack.shape[0]
    ds.Rows, ds.Columns = stack.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit, ds.PixelRepresentation = bits - 1, int(signed)
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept or 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    dtype = {(8, False): np.uint8, (16, False): np.uint16, (16, True): np.int16}[(bits, signed)]
    raw = np.ascontiguousarray(stack, dtype=dtype).tobytes()
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + raw[:64]]) if syntax else raw
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def nifti_file(
    voxels: np.ndarray,
    *,
    slope: float = 1.0,
    intercept: float = 0.0,
    cal: Sequence[float] | None = None,
    compressed: bool = False,
    version: int = 1,
) -> bytes:
    """A single-file NIfTI-1 (or -2) image of ``voxels`` (i, j[, k]), optionally gzipped."""
    import nibabel

    cls = nibabel.Nifti1Image if version == 1 else nibabel.Nifti2Image
    image = cls(np.asarray(voxels), np.eye(4))  # type: ignore[no-untyped-call]
    image.header.set_slope_inter(slope, intercept)  # type: ignore[no-untyped-call]
    if cal is not None:
        image.header["cal_min"], image.header["cal_max"] = cal
    data = bytes(image.to_bytes())
    return gzip.compress(data, mtime=0) if compressed else data
