"""ml.preprocessing.inspect: what the web process checks from a file's header, without
decoding its pixels. It agrees with `decode` on what it reads, refuses what a header
shows is wrong, and costs memory near the file's size, not its pixels'."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from ml.preprocessing import ImageTooLarge, UnreadableImage, UnsupportedImage, decode, inspect
from tests.support.images import bomb_png, dicom_bytes, gif_bytes, jpeg_bytes, png_bytes


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (png_bytes(96, 80), ("png", 96, 80)),
        (jpeg_bytes(), ("jpeg", 96, 96)),
        (dicom_bytes(), ("dicom", 72, 80)),
    ],
    ids=["png", "jpeg", "dicom"],
)
def test_inspect_reads_format_and_size_as_decode_does(data, expected):
    header = inspect(data)
    assert (header.format, header.width, header.height) == expected
    assert decode(data).image.shape == (header.height, header.width)


def test_inspect_agrees_with_decode_on_real_radiographs(radiograph_set):
    for path in sorted((radiograph_set / "chest_xray/train/NORMAL").iterdir())[:3]:
        data = path.read_bytes()
        header = inspect(data)
        assert decode(data).image.shape == (header.height, header.width)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", UnreadableImage),
        (b"not an image at all", UnreadableImage),
        (png_bytes()[:20], UnreadableImage),
        (gif_bytes(), UnsupportedImage),
        (bomb_png(), ImageTooLarge),
        (dicom_bytes(with_pixels=False), UnsupportedImage),
        (png_bytes(64, 48), UnsupportedImage),
    ],
    ids=["empty", "text", "cut-header", "gif", "bomb", "dicom-no-pixels", "too-small"],
)
def test_inspect_refuses_what_the_header_shows_is_wrong(data, error):
    with pytest.raises(error):
        inspect(data)


def test_inspect_of_a_49_megapixel_jpeg_costs_little_memory():
    picture = Image.fromarray(np.zeros((70, 70), np.uint8), mode="L").resize((7000, 7000))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG")
    data = buffer.getvalue()
    tracemalloc.start()
    header = inspect(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (header.width, header.height) == (7000, 7000)
    assert peak < 10 * 1024 * 1024  # a decode would need 49 MB for 8-bit pixels alone


class _CountingFile(io.BytesIO):
    """A file that counts the bytes read from it."""

    read_bytes = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.read_bytes += len(chunk)
        return chunk


def _legacy_dicom() -> bytes:
    """A DICOM file written without the Part 10 preamble and file meta (older modalities)."""
    import pydicom
    from pydicom.dataset import Dataset

    bare = Dataset()
    bare.update(pydicom.dcmread(io.BytesIO(dicom_bytes())))
    buffer = io.BytesIO()
    bare.save_as(buffer, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [png_bytes(96, 80), jpeg_bytes(), dicom_bytes(), _legacy_dicom()],
    ids=["png", "jpeg", "dicom", "legacy-dicom"],
)
def test_inspect_of_a_file_reads_what_inspect_of_its_bytes_reads(data):
    assert inspect(io.BytesIO(data)) == inspect(data)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (dicom_bytes(with_pixels=False), UnsupportedImage),
        (dicom_bytes()[:300], UnsupportedImage),
        (png_bytes()[:20], UnreadableImage),
    ],
    ids=["dicom-no-pixels", "dicom-cut-in-its-header", "png-cut-in-its-header"],
)
def test_inspect_of_a_file_refuses_what_its_header_shows_is_wrong(data, error):
    with pytest.raises(error):
        inspect(io.BytesIO(data))


def test_inspect_of_a_large_dicom_file_reads_its_header_not_its_pixels():
    """An upload spooled to disk: the pixel data (8 MB here) is skipped, not read."""
    from devtools import dicom_files

    pixels = np.random.default_rng(2).integers(0, 4096, size=(2048, 2048), dtype=np.uint16)
    handle = _CountingFile(dicom_files.to_bytes(dicom_files.radiograph(pixels=pixels)))
    assert inspect(handle).width == 2048
    assert handle.read_bytes < 64 * 1024
