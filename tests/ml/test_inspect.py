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


def test_inspect_agrees_with_decode_on_real_radiographs(shared_data):
    for path in sorted((shared_data / "chest_xray/train/NORMAL").iterdir())[:3]:
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
