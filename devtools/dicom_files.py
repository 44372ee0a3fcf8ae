"""DICOM instances as a modality would send them, built from a real chest radiograph (from
tests/data/radiographs) or synthetic pixels, in the transfer syntax a test asks for."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

DX_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.1")
CR = UID("1.2.840.10008.5.1.4.1.1.1")
CT = UID("1.2.840.10008.5.1.4.1.1.2")
COMPRESSED = {"j2k": JPEG2000Lossless, "jls": JPEGLSLossless, "rle": RLELossless}


def chest_pixels(path: Path | None = None, *, side: int = 384) -> np.ndarray:
    """A radiograph's pixels as 12-bit values (a real one when `path` is given)."""
    if path is None:
        y, x = np.mgrid[0:side, 0:side]
        picture = (np.sin(x / 17.0) + np.cos(y / 23.0) + 2) * 1000
        return picture.astype(np.uint16)
    with PILImage.open(path) as opened:
        gray = opened.convert("L")
        gray.thumbnail((side, side))
        return np.asarray(gray, dtype=np.uint16) * 16


def radiograph(
    *,
    pixels: np.ndarray,
    study_uid: str | None = None,
    sop_class: UID = DX_FOR_PRESENTATION,
    modality: str = "DX",
    body_part: str = "CHEST",
    age: str = "003Y",
    patient_id: str = "PAT-0042",
    issuer: str = "",
    accession: str = "ACC-1001",
    syntax: str = "explicit",
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID = "Test^Child", patient_id
    if issuer:
        ds.IssuerOfPatientID = issuer
    ds.PatientBirthDate, ds.PatientSex, ds.PatientAge = "20230101", "F", age
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20261130", "101500", "1"
    ds.AccessionNumber, ds.StudyDescription = accession, "XR CHEST 1 VIEW"
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = modality, body_part, "PA"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Manufacturer, ds.ReferringPhysicianName = "TestVendor", ""
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    if syntax in COMPRESSED:
        ds.compress(COMPRESSED[syntax])
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write(ds: Dataset, path: Path) -> Path:
    path.write_bytes(to_bytes(ds))
    return path
