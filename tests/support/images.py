"""Radiograph-like and broken files built in memory, so tests need no fixtures on disk."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw


def png_bytes(width: int = 96, height: int = 80, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((height, width)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(width: int = 96, height: int = 96) -> bytes:
    pixels = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, mode="L").save(buffer, format="JPEG")
    return buffer.getvalue()


def gif_bytes() -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(np.arange(96 * 96, dtype=np.uint8).reshape(96, 96)).save(
        buffer, format="GIF"
    )
    return buffer.getvalue()


def bomb_png() -> bytes:
    """A small file declaring 9,000 x 9,000 pixels (a decompression bomb)."""
    buffer = io.BytesIO()
    PILImage.new("1", (9_000, 9_000)).save(buffer, format="PNG")
    return buffer.getvalue()


def dicom_bytes(*, with_pixels: bool = True) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1.1")  # DX image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    if with_pixels:
        pixels = (np.arange(80 * 72, dtype=np.uint16).reshape(80, 72) * 7) % 4096
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def photograph_jpeg(width: int = 400, height: int = 300) -> bytes:
    """A colourful RGB picture (gradients, a sun, a house, a lawn): not a radiograph."""
    x = np.linspace(0, 1, width)[None, :, None]
    y = np.linspace(0, 1, height)[:, None, None]
    sky = np.concatenate([0.3 + 0.4 * y + 0 * x, 0.6 + 0.2 * x + 0 * y, 0.95 + 0 * x * y], axis=2)
    picture = PILImage.fromarray((np.clip(sky, 0, 1) * 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(picture)
    draw.rectangle([0, 210, width, height], fill=(40, 160, 60))
    draw.ellipse([300, 30, 360, 90], fill=(250, 210, 30))
    draw.rectangle([90, 130, 210, 230], fill=(200, 60, 50))
    draw.polygon([(80, 130), (150, 70), (220, 130)], fill=(120, 50, 30))
    draw.rectangle([135, 180, 165, 230], fill=(90, 60, 20))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
