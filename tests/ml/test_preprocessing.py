"""ml.preprocessing on real radiographs: the JPEG originals, DICOM and PNG files made from
them, pydicom-data's CR chest image, what decode() learns besides the image (header, colour),
and every way an upload can be refused. DICOM quirks live in test_dicom_quirks.py."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import random
import shutil
import struct
import subprocess
import sys
import time
import zlib
from functools import cache
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageFile
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

from ml import preprocessing
from ml.preprocessing import (
    MIN_SIDE,
    PREPROCESSING_VERSION,
    ImageError,
    ImageTooLarge,
    UnreadableImage,
    UnsupportedImage,
    decode,
    decode_image,
    image_format,
    is_dicom,
    normalize_intensity,
    preprocess,
    preview_png,
    to_model_input,
    to_uint8,
)
from tests.support.radiographs import radiographs_root

REPO_ROOT = Path(__file__).resolve().parents[2]
# The `radiograph_set` fixture's folder: parametrisation needs the file list at collection.
_RADIOGRAPHS = radiographs_root()
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
# A grey original of moderate size (1368 x 1009): full resolution, yet quick to re-encode.
REFERENCE = "originals/NORMAL/IM-0316-0001.jpeg"
RGB_CODED = (
    "originals/PNEUMONIA/person1052_virus_1751.jpeg",
    "originals/PNEUMONIA/person1073_bacteria_3008.jpeg",
)


@cache
def _manifest() -> list[dict[str, str]]:
    manifest = _RADIOGRAPHS / "MANIFEST.csv"
    if not manifest.exists():
        return []
    with manifest.open(newline="") as handle:
        return list(csv.DictReader(handle))


ORIGINALS = [row["path"] for row in _manifest() if row["path"].startswith("originals/")] or [
    "originals/missing"  # the radiograph_set fixture then fails with a clear message
]


@cache
def _read(path: Path) -> bytes:
    return path.read_bytes()


def _gray(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def _png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _dicom(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 8,
    syntax: str | None = None,
    **elements: object,
) -> bytes:
    """A Part 10 file (preamble, DICM, file meta) of a CR image, optionally compressed."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.Modality = "CR"
    ds.set_pixel_data(pixels, photometric, bits_stored)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    if syntax is not None:
        ds.compress(syntax)
    return _saved(ds)


def _jpeg_dicom(jpeg: bytes) -> bytes:
    """A JPEG file wrapped unchanged in a JPEG Baseline DICOM, as dcmtk's img2dcm does."""
    image = Image.open(io.BytesIO(jpeg))
    grey = image.mode == "L"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = image.height, image.width
    ds.SamplesPerPixel = 1 if grey else 3
    ds.PhotometricInterpretation = "MONOCHROME2" if grey else "YBR_FULL_422"
    if not grey:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([jpeg])
    ds["PixelData"].VR = "OB"
    return _saved(ds)


def _saved(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _encoder_available(syntax: str) -> bool:
    from pydicom.pixels import get_encoder

    return get_encoder(syntax).is_available


@pytest.fixture(scope="module")
def reference_jpeg(radiograph_set) -> bytes:
    return _read(radiograph_set / REFERENCE)


@pytest.fixture(scope="module")
def radiograph(reference_jpeg) -> np.ndarray:
    """The reference original as 8-bit grey pixels, full size (1009 rows x 1368 columns)."""
    return _gray(reference_jpeg)


@pytest.fixture(scope="module")
def small_radiograph(radiograph) -> np.ndarray:
    """The same radiograph at 320 x 256: enough anatomy, fast to compress."""
    return np.asarray(Image.fromarray(radiograph).resize((320, 256), Image.Resampling.BILINEAR))


@pytest.fixture(scope="module")
def expected(radiograph) -> np.ndarray:
    return normalize_intensity(radiograph)


@pytest.fixture(scope="module")
def expected_small(small_radiograph) -> np.ndarray:
    return normalize_intensity(small_radiograph)


# --- The full-size originals (JPEG) ---------------------------------------------------------


@pytest.mark.parametrize("original", ORIGINALS)
def test_full_size_original_preprocesses_like_its_224px_training_copy(radiograph_set, original):
    rows = {row["path"]: row for row in _manifest()}
    copy = "chest_xray/train/" + original.removeprefix("originals/")
    assert copy in rows, f"{original} has no 224 px copy in the training split"
    assert rows[copy]["patient"] == rows[original]["patient"]
    assert rows[copy]["label"] == rows[original]["label"]
    assert rows[copy]["sha256"] != rows[original]["sha256"]  # really two different files

    from_original = preprocess(_read(radiograph_set / original), 224)
    from_copy = preprocess(_read(radiograph_set / copy), 224)

    assert from_original.shape == (224, 224, 1)
    assert from_original.dtype == np.float32
    assert 0.0 <= from_original.min() and from_original.max() <= 1.0
    assert _pearson(from_original, from_copy) > 0.99
    assert np.abs(from_original - from_copy).mean() < 0.06


@pytest.mark.parametrize(
    "original",
    [
        REFERENCE,
        *RGB_CODED,
        "originals/NORMAL/IM-0249-0001.jpeg",  # the widest, 2396 x 1990
        "originals/NORMAL/NORMAL2-IM-1333-0001.jpeg",  # taller than wide, 1364 x 1456
    ],
)
def test_full_size_original_decodes_to_one_unit_range_channel_at_full_resolution(
    radiograph_set, original
):
    data = _read(radiograph_set / original)
    width, height = Image.open(io.BytesIO(data)).size

    image = decode_image(data)

    assert image.shape == (height, width)
    assert image.dtype == np.float32
    assert image.min() == 0.0 and image.max() == 1.0
    assert 0.2 < image.mean() < 0.8  # stretched, not crushed to one end


def test_exactly_the_two_documented_originals_are_rgb_coded(radiograph_set):
    rgb = [p for p in ORIGINALS if Image.open(radiograph_set / p).mode == "RGB"]
    assert sorted(rgb) == sorted(RGB_CODED)


@pytest.mark.parametrize("original", RGB_CODED)
def test_rgb_coded_original_decodes_exactly_like_its_grayscale_version(radiograph_set, original):
    data = _read(radiograph_set / original)
    pixels = np.asarray(Image.open(io.BytesIO(data)))
    assert pixels.ndim == 3 and np.array_equal(pixels[..., 0], pixels[..., 2])

    np.testing.assert_allclose(decode_image(data), normalize_intensity(pixels[..., 0]), atol=1e-6)


# --- DICOM made from the originals ----------------------------------------------------------


def test_is_dicom_recognises_the_part10_preamble_only(small_radiograph, reference_jpeg):
    assert is_dicom(_dicom(small_radiograph))
    assert not is_dicom(reference_jpeg)
    assert not is_dicom(_png(Image.fromarray(small_radiograph)))
    assert not is_dicom(b"")
    assert not is_dicom(b"\0" * 128 + b"DIC")


def test_image_format_names_dicom_with_or_without_preamble_png_and_jpeg(
    small_radiograph, reference_jpeg
):
    part10 = _dicom(small_radiograph)
    legacy = Path(get_testdata_file("OT-PAL-8-face.dcm") or "").read_bytes()  # no preamble
    assert image_format(part10) == "dicom"
    assert image_format(part10[132:]) == "dicom"  # meta kept, preamble and DICM lost
    assert image_format(legacy) == "dicom" and not is_dicom(legacy)
    # The header decides: a legacy file cut short inside its pixels is still DICOM.
    assert image_format(legacy[:4000]) == "dicom"
    assert image_format(_png(Image.fromarray(small_radiograph))) == "png"
    assert image_format(reference_jpeg) == "jpeg"


def test_monochrome2_8bit_dicom_decodes_to_the_same_pixels_as_its_source(radiograph, expected):
    image = decode_image(_dicom(radiograph))

    assert image.dtype == np.float32
    np.testing.assert_allclose(image, expected, atol=1e-6)


def test_monochrome1_dicom_is_inverted_so_bone_is_white(radiograph, expected):
    stored = 255 - radiograph  # MONOCHROME1: the same film, stored dark = dense

    image = decode_image(_dicom(stored, photometric="MONOCHROME1"))

    np.testing.assert_allclose(image, expected, atol=1e-6)
    assert _pearson(image, normalize_intensity(stored)) < -0.99


def test_16bit_dicom_applies_rescale_slope_and_intercept_before_a_wide_window(radiograph, expected):
    stored = radiograph.astype(np.uint16) * 15 + 100  # 100 .. 3925, i.e. 12-bit detector data
    data = _dicom(
        stored,
        bits_stored=12,
        RescaleSlope=2,
        RescaleIntercept=-1024,
        WindowCenter=3000,
        WindowWidth=9000,  # in rescaled units; covers -824 .. 6826
    )

    image = decode_image(data)

    assert image.shape == radiograph.shape
    np.testing.assert_allclose(image, expected, atol=1e-4)


def test_16bit_dicom_window_center_and_width_saturate_values_outside_the_window(radiograph):
    stored = radiograph.astype(np.uint16) * 15 + 100
    rescaled = stored * 2.0 - 1024  # what RescaleSlope / RescaleIntercept below make of it
    low_edge, high_edge = np.percentile(rescaled, [25, 75])
    data = _dicom(
        stored,
        bits_stored=12,
        RescaleSlope=2,
        RescaleIntercept=-1024,
        WindowCenter=(low_edge + high_edge) / 2,
        WindowWidth=high_edge - low_edge,
    )

    image = decode_image(data)

    assert np.all(image[rescaled < low_edge - 2] == 0.0)
    assert np.all(image[rescaled > high_edge + 2] == 1.0)
    inside = (rescaled > low_edge + 2) & (rescaled < high_edge - 2)
    assert 0.0 < image[inside].min() and image[inside].max() < 1.0
    assert _pearson(image[inside], rescaled[inside]) > 0.999


def test_16bit_monochrome1_dicom_with_rescale_matches_its_monochrome2_source(radiograph, expected):
    stored = (255 - radiograph.astype(np.uint16)) * 257  # full 16-bit range, inverted
    data = _dicom(
        stored,
        photometric="MONOCHROME1",
        bits_stored=16,
        RescaleSlope=0.5,
        RescaleIntercept=10,
        WindowCenter=16394,
        WindowWidth=32768,
    )

    np.testing.assert_allclose(decode_image(data), expected, atol=1e-4)


@pytest.mark.parametrize(
    ("syntax", "bits"),
    [(RLELossless, 8), (RLELossless, 16), (JPEG2000Lossless, 8), (JPEG2000Lossless, 16)],
    ids=["rle-8bit", "rle-16bit", "jpeg2000-lossless-8bit", "jpeg2000-lossless-16bit"],
)
def test_losslessly_compressed_dicom_decodes_identically_to_uncompressed(
    small_radiograph, expected_small, syntax, bits
):
    if not _encoder_available(syntax):
        pytest.skip(f"pydicom has no encoder plugin installed for {syntax.name}")
    pixels = small_radiograph.astype(np.uint16) * 257 if bits == 16 else small_radiograph

    data = _dicom(pixels, bits_stored=bits, syntax=syntax)

    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_allclose(decode_image(data), expected_small, atol=1e-6)


def test_jpeg_baseline_dicom_wrapping_an_original_decodes_like_the_jpeg_itself(
    reference_jpeg, expected
):
    data = _jpeg_dicom(reference_jpeg)

    image = decode_image(data)

    assert image.shape == expected.shape
    assert _pearson(image, expected) > 0.999
    assert np.abs(image - expected).max() < 0.05  # decoders may differ by a grey level


@pytest.mark.parametrize("original", RGB_CODED)
def test_ybr_jpeg_dicom_of_an_rgb_coded_grey_original_is_accepted(radiograph_set, original):
    jpeg = _read(radiograph_set / original)

    image = decode_image(_jpeg_dicom(jpeg))

    from_jpeg = decode_image(jpeg)
    assert image.shape == from_jpeg.shape
    assert _pearson(image, from_jpeg) > 0.999


def test_jpeg2000_rgb_dicom_whose_channels_are_equal_is_read_as_grey(
    small_radiograph, expected_small
):
    if not _encoder_available(JPEG2000Lossless):
        pytest.skip("pylibjpeg-openjpeg cannot encode JPEG 2000 here")
    rgb = np.repeat(small_radiograph[..., np.newaxis], 3, axis=-1)

    data = _dicom(rgb, photometric="RGB", syntax=JPEG2000Lossless)

    np.testing.assert_allclose(decode_image(data), expected_small, atol=1e-6)


def test_real_cr_chest_dicom_monochrome1_reads_with_bone_white():
    path = get_testdata_file("RG1_UNCR.dcm")
    assert path is not None, "pydicom-data is a dev dependency and ships RG1_UNCR.dcm"
    data = Path(path).read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.BodyPartExamined == "CHEST"

    image = decode_image(data)

    assert image.shape == (ds.Rows, ds.Columns) and image.dtype == np.float32
    assert _pearson(image, normalize_intensity(ds.pixel_array)) < -0.9
    rows, columns = image.shape
    band = slice(int(rows * 0.3), int(rows * 0.6))
    spine = image[band, int(columns * 0.47) : int(columns * 0.53)].mean()
    lungs = np.concatenate(
        [
            image[band, int(columns * 0.2) : int(columns * 0.35)],
            image[band, int(columns * 0.65) : int(columns * 0.8)],
        ]
    ).mean()
    assert spine > lungs + 0.2  # mediastinum bright, air-filled lungs dark


def test_real_jpeg2000_lossless_cr_decodes_like_its_uncompressed_twin(monkeypatch):
    compressed, plain = get_testdata_file("RG1_J2KR.dcm"), get_testdata_file("RG1_UNCR.dcm")
    assert compressed is not None and plain is not None
    monkeypatch.setattr(preprocessing, "_j2k_reduced", lambda ds: None)  # full resolution

    np.testing.assert_array_equal(
        decode_image(Path(compressed).read_bytes()), decode_image(Path(plain).read_bytes())
    )


@pytest.mark.parametrize("name", ["RG1_J2KR.dcm", "RG1_J2KI.dcm"])
def test_a_large_jpeg2000_radiograph_is_read_at_half_resolution_and_the_model_sees_the_same(
    name, monkeypatch
):
    # 1,955 x 1,841: one level down its wavelet pyramid is still above DECODE_LONG_SIDE.
    path = get_testdata_file(name)
    assert path is not None
    data = Path(path).read_bytes()

    reduced = decode_image(data)
    monkeypatch.setattr(preprocessing, "_j2k_reduced", lambda ds: None)
    full = decode_image(data)

    assert full.shape == (1955, 1841) and reduced.shape == (978, 921)
    difference = np.abs(to_model_input(reduced, 224) - to_model_input(full, 224)) * 255
    assert difference.mean() < 0.5 and np.percentile(difference, 99) < 3  # grey levels


def test_jpeg2000_that_is_small_coloured_or_signed_is_read_at_full_resolution():
    for name in ("MR2_J2KR.dcm", "US1_J2KI.dcm", "J2K_pixelrep_mismatch.dcm"):
        path = get_testdata_file(name)
        assert path is not None
        ds = pydicom.dcmread(path)
        assert preprocessing._j2k_reduced(ds) is None, name


def test_jpeg2000_levels_keep_the_long_side_at_least_the_decode_side():
    assert preprocessing._j2k_levels(1791) == 0
    assert preprocessing._j2k_levels(1955) == 1
    assert preprocessing._j2k_levels(4300) == 2  # 1,075 px
    assert preprocessing.DECODE_LONG_SIDE == 896


def test_real_12bit_jpeg_extended_dicom_decodes():
    path = get_testdata_file("JPGExtended.dcm")
    assert path is not None

    image = decode_image(Path(path).read_bytes())

    assert image.shape == (1024, 256) and image.min() == 0.0 and image.max() == 1.0


def test_img2dcm_conversion_of_originals_decodes_like_the_jpegs(radiograph_set, tmp_path):
    img2dcm = shutil.which("img2dcm")
    if img2dcm is None:
        pytest.skip("dcmtk's img2dcm is not installed (apt-get install dcmtk)")
    for original in (REFERENCE, RGB_CODED[0]):
        jpeg = radiograph_set / original
        target = tmp_path / (jpeg.stem + ".dcm")
        subprocess.run([img2dcm, str(jpeg), str(target)], check=True, timeout=30)

        image = decode_image(target.read_bytes())

        from_jpeg = decode_image(_read(jpeg))
        assert image.shape == from_jpeg.shape
        assert _pearson(image, from_jpeg) > 0.999, original


# --- PNG and other rasters made from the original -------------------------------------------


def test_8bit_grayscale_png_decodes_losslessly(radiograph, expected):
    np.testing.assert_array_equal(decode_image(_png(Image.fromarray(radiograph))), expected)


@pytest.mark.parametrize("scale", [257, 16], ids=["full-16-bit", "12-bit-in-16-bit"])
def test_16bit_grayscale_png_keeps_its_depth_and_matches_the_8bit_image(
    small_radiograph, expected_small, scale
):
    data = _png(Image.fromarray(small_radiograph.astype(np.uint16) * scale))
    assert data[24] == 16  # IHDR bit depth: really a 16-bit file

    np.testing.assert_allclose(decode_image(data), expected_small, atol=1e-6)


def test_16bit_png_uses_its_low_order_bits(small_radiograph):
    # Values 0..255 in a 16-bit container: read as 8 bits they would all be black.
    data = _png(Image.fromarray(small_radiograph.astype(np.uint16)))

    image = decode_image(data)

    np.testing.assert_allclose(image, normalize_intensity(small_radiograph), atol=1e-6)


def test_rgb_png_with_equal_channels_decodes_like_grayscale(small_radiograph, expected_small):
    rgb = np.repeat(small_radiograph[..., np.newaxis], 3, axis=-1)

    np.testing.assert_array_equal(decode_image(_png(Image.fromarray(rgb))), expected_small)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_margin_reads_as_black_air_not_as_bone(small_radiograph, mode):
    margin = 40
    height, width = small_radiograph.shape
    canvas = Image.new(mode, (width + 2 * margin, height + 2 * margin), _white_transparent(mode))
    canvas.paste(Image.fromarray(small_radiograph).convert(mode), (margin, margin))

    image = decode_image(_png(canvas))

    assert np.all(image[:margin] == 0.0) and np.all(image[:, :margin] == 0.0)
    assert np.all(image[-margin:] == 0.0) and np.all(image[:, -margin:] == 0.0)
    inside = image[margin:-margin, margin:-margin]
    assert _pearson(inside, small_radiograph.astype(np.float32)) > 0.999


def _white_transparent(mode: str) -> tuple[int, ...]:
    return (255, 0) if mode == "LA" else (255, 255, 255, 0)


def test_transparent_palette_entry_reads_as_black_air(small_radiograph):
    # Index 0 is white but fully transparent (tRNS); indices 1..128 are the radiograph.
    margin = 40
    height, width = small_radiograph.shape
    indices = np.zeros((height + 2 * margin, width + 2 * margin), dtype=np.uint8)
    indices[margin:-margin, margin:-margin] = small_radiograph // 2 + 1
    picture = Image.frombytes("P", indices.shape[::-1], indices.tobytes())
    picture.putpalette([255, 255, 255] + [v for i in range(255) for v in (min(2 * i, 255),) * 3])

    image = decode_image(_png(picture, transparency=0))

    assert np.all(image[:margin] == 0.0) and np.all(image[:, -margin:] == 0.0)
    inside = image[margin:-margin, margin:-margin]
    assert _pearson(inside, small_radiograph.astype(np.float32)) > 0.999


def test_semi_transparent_pixels_are_composited_onto_black(small_radiograph):
    alpha = np.full(small_radiograph.shape, 255, dtype=np.uint8)
    alpha[small_radiograph.shape[0] // 2 :] = 128  # lower half half-transparent
    rgba = np.dstack([small_radiograph] * 3 + [alpha])

    image = decode_image(_png(Image.fromarray(rgba, "RGBA")))

    on_black = small_radiograph.astype(np.float32) * alpha / 255.0
    np.testing.assert_allclose(image, normalize_intensity(on_black), atol=2.5 / 255)


def test_palette_png_is_read_through_its_palette(small_radiograph, expected_small):
    # Index i shows grey 255 - i: ignoring the palette would give a negative image.
    indices = (255 - small_radiograph).astype(np.uint8)
    height, width = indices.shape
    picture = Image.frombytes("P", (width, height), indices.tobytes())
    picture.putpalette([value for grey in range(256) for value in (255 - grey,) * 3])

    np.testing.assert_array_equal(decode_image(_png(picture)), expected_small)


def test_grayscale_jpeg_reencoded_from_the_original_stays_close(radiograph, expected):
    data = _encoded(Image.fromarray(radiograph), "JPEG")

    assert _pearson(decode_image(data), expected) > 0.995


# --- Rejections -----------------------------------------------------------------------------


def test_every_refusal_is_an_image_error_and_a_value_error():
    assert issubclass(UnreadableImage, ImageError) and issubclass(UnsupportedImage, ImageError)
    assert issubclass(ImageTooLarge, UnsupportedImage) and issubclass(ImageError, ValueError)
    assert not issubclass(UnreadableImage, UnsupportedImage)


def test_empty_bytes_are_unreadable():
    with pytest.raises(UnreadableImage, match="empty"):
        decode_image(b"")


def test_random_bytes_are_unreadable():
    noise = random.Random(0).randbytes(20_000)

    with pytest.raises(UnreadableImage):
        decode_image(noise)


def test_a_text_file_is_unreadable():
    with pytest.raises(UnreadableImage):
        decode_image(b"patient,label\nperson1,PNEUMONIA\n" * 50)


@pytest.mark.parametrize("fraction", [0.001, 0.02, 0.5, 0.95])
def test_truncated_jpeg_original_is_unreadable(reference_jpeg, fraction):
    with pytest.raises(UnreadableImage):
        decode_image(reference_jpeg[: int(len(reference_jpeg) * fraction)])


@pytest.mark.parametrize("fraction", [0.001, 0.02, 0.5, 0.95])
def test_truncated_png_is_unreadable(small_radiograph, fraction):
    data = _png(Image.fromarray(small_radiograph))

    with pytest.raises(UnreadableImage):
        decode_image(data[: int(len(data) * fraction)])


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_valid_image_in_an_unsupported_format_is_refused_by_name(small_radiograph, fmt):
    data = _encoded(Image.fromarray(small_radiograph), fmt)

    with pytest.raises(UnsupportedImage, match=fmt) as refused:
        decode_image(data)
    assert not isinstance(refused.value, ImageTooLarge)


def test_animated_png_is_refused(small_radiograph):
    frames = [Image.fromarray(small_radiograph), Image.fromarray(255 - small_radiograph)]
    data = _png(frames[0], save_all=True, append_images=frames[1:])

    with pytest.raises(UnsupportedImage, match="Animated"):
        decode_image(data)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _all_black_bilevel_png(side: int) -> bytes:
    """A valid 1-bit PNG of side x side black pixels; tiny on disk, huge once decoded.

    The zlib stream repeats one fully flushed block of zero rows (identical output each
    time), so even a 60,000 px square costs a few MB to build, not 3.6 GB.
    """
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    rows_per_block = 1000
    assert side % rows_per_block == 0
    block = row * rows_per_block
    compressor = zlib.compressobj(9)
    head = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeat = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(side // rows_per_block):
        adler = zlib.adler32(block, adler)
    tail = compressor.flush()[:-4] + struct.pack(">I", adler)
    stream = head + repeat * (side // rows_per_block - 1) + tail
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", stream)
        + _png_chunk(b"IEND", b"")
    )


@pytest.fixture
def decoding_forbidden(monkeypatch):
    """Any attempt to decode raster pixels fails the test loudly."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("pixels were decoded before the size was checked")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    monkeypatch.setattr(Image.Image, "load", refuse)


def test_the_bomb_builder_makes_a_valid_png():
    image = Image.open(io.BytesIO(_all_black_bilevel_png(2000)))
    image.load()
    assert image.size == (2000, 2000) and image.getextrema() == (0, 0)


@pytest.mark.parametrize("side", [60_000, 8_000], ids=["beyond-pillows-limit", "beyond-ours"])
def test_decompression_bomb_png_is_refused_before_decoding(side, decoding_forbidden):
    bomb = _all_black_bilevel_png(side)
    assert len(bomb) < 5_000_000

    with pytest.raises(ImageTooLarge):
        decode_image(bomb)


def test_max_pixels_refuses_a_real_original_and_preprocess_passes_it_on(reference_jpeg):
    with pytest.raises(ImageTooLarge, match="1368x1009"):
        decode_image(reference_jpeg, max_pixels=1_000_000)
    with pytest.raises(ImageTooLarge):
        preprocess(reference_jpeg, 224, max_pixels=1_000_000)
    assert preprocess(reference_jpeg, 224, max_pixels=1368 * 1009).shape == (224, 224, 1)


def test_dicom_declaring_a_huge_image_is_refused_before_its_pixels_are_decoded(
    small_radiograph,
):
    ds = pydicom.dcmread(io.BytesIO(_dicom(small_radiograph, syntax=RLELossless)))
    ds.Rows, ds.Columns = 60_000, 60_000  # a few KB of RLE claiming 3.6 Gpx

    with pytest.raises(ImageTooLarge, match="60000x60000"):
        decode_image(_saved(ds))


def test_dicom_without_pixel_data_is_refused(small_radiograph):
    ds = pydicom.dcmread(io.BytesIO(_dicom(small_radiograph)))
    del ds.PixelData

    with pytest.raises(UnsupportedImage, match="no pixel data"):
        decode_image(_saved(ds))


def test_dicom_file_without_the_part10_preamble_or_pixel_data_is_unreadable():
    # Legacy files without preamble are read when they hold an image (test_dicom_quirks.py);
    # this one is a bare header, so it stays what it was: not an image we can read.
    path = get_testdata_file("no_meta.dcm")
    assert path is not None
    data = Path(path).read_bytes()
    assert not is_dicom(data)

    with pytest.raises(UnreadableImage):
        decode_image(data)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.99])
def test_dicom_truncated_inside_its_pixel_data_is_unreadable(small_radiograph, fraction):
    data = _dicom(small_radiograph)

    with pytest.raises(UnreadableImage):
        decode_image(data[: int(len(data) * fraction)])


@pytest.mark.filterwarnings("ignore:.*VR UI:UserWarning")  # pydicom on broken UIDs
def test_dicom_truncated_anywhere_in_its_header_is_refused_as_an_image_error(small_radiograph):
    data = _dicom(
        small_radiograph.astype(np.uint16) * 16,
        bits_stored=12,
        RescaleSlope=1,
        RescaleIntercept=0,
        WindowCenter=2048,
        WindowWidth=4096,
    )
    header_end = data.index(b"\xe0\x7f\x10\x00") + 12  # PixelData tag, VR, length
    outcomes: dict[str, int] = {}
    for cut in range(132, header_end):
        try:
            decode_image(data[:cut])
        except UnreadableImage:
            outcome = "unreadable"
        except UnsupportedImage as exc:
            # Cut exactly between two elements, the rest is a valid dataset without pixels.
            outcome = "no pixel data" if "no pixel data" in str(exc) else repr(exc)
        except Exception as exc:  # noqa: BLE001 - recording what leaked is the point
            outcome = f"{type(exc).__name__} at {cut}"
        else:
            outcome = f"decoded at {cut}"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert set(outcomes) <= {"unreadable", "no pixel data"}, outcomes


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom describes each corruption
def test_corrupt_dicom_header_bytes_raise_image_errors_only(small_radiograph):
    data = _dicom(
        small_radiograph.astype(np.uint16) * 16,
        bits_stored=12,
        RescaleSlope=1,
        RescaleIntercept=0,
        WindowCenter=2048,
        WindowWidth=4096,
    )
    header_end = data.index(b"\xe0\x7f\x10\x00")
    rng = random.Random(7)
    escaped = {}
    for _ in range(300):
        corrupt = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            corrupt[rng.randrange(132, header_end)] = rng.randrange(256)
        try:
            decode_image(bytes(corrupt))
        except ImageError:
            pass
        except Exception as exc:  # noqa: BLE001
            escaped.setdefault(type(exc).__name__, str(exc)[:80])
    assert escaped == {}


def test_multi_frame_dicom_is_refused(small_radiograph):
    frames = np.stack([small_radiograph, 255 - small_radiograph, small_radiograph // 2])

    with pytest.raises(UnsupportedImage, match="Multi-frame") as refused:
        decode_image(_dicom(frames))
    assert not isinstance(refused.value, ImageTooLarge)


def test_real_multi_frame_rle_dicom_is_refused():
    path = get_testdata_file("OBXXXX1A_rle_2frame.dcm")
    assert path is not None

    with pytest.raises(UnsupportedImage, match="Multi-frame"):
        decode_image(Path(path).read_bytes())


def test_colour_rgb_dicom_is_refused(small_radiograph):
    tinted = np.dstack([small_radiograph, small_radiograph // 2, 255 - small_radiograph]).astype(
        np.uint8
    )

    with pytest.raises(UnsupportedImage, match="Colour"):
        decode_image(_dicom(tinted, photometric="RGB"))


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_dcmtk.dcm", "SC_rgb.dcm", "SC_rgb_rle.dcm"])
def test_real_colour_dicom_is_refused(name):
    path = get_testdata_file(name)
    assert path is not None

    with pytest.raises(UnsupportedImage, match="Colour"):
        decode_image(Path(path).read_bytes())


def test_jpeg2000_colour_dicom_is_refused(small_radiograph):
    if not _encoder_available(JPEG2000Lossless):
        pytest.skip("pylibjpeg-openjpeg cannot encode JPEG 2000 here")
    tinted = np.dstack([small_radiograph, small_radiograph // 2, 255 - small_radiograph])

    with pytest.raises(UnsupportedImage, match="Colour"):
        decode_image(_dicom(tinted.astype(np.uint8), photometric="RGB", syntax=JPEG2000Lossless))


@pytest.mark.parametrize("kind", ["png", "jpeg", "dicom-16bit"])
def test_blank_constant_image_is_refused(kind):
    if kind == "dicom-16bit":
        data = _dicom(np.full((256, 256), 1200, dtype=np.uint16), bits_stored=12)
    else:
        data = _encoded(Image.new("L", (256, 256), 128), kind.upper())

    with pytest.raises(UnsupportedImage, match="blank"):
        decode_image(data)


@pytest.mark.parametrize("size", [(MIN_SIDE - 1, 500), (500, MIN_SIDE - 1), (16, 16)])
def test_image_smaller_than_the_minimum_side_is_refused(small_radiograph, size):
    data = _png(Image.fromarray(small_radiograph).resize(size))

    with pytest.raises(UnsupportedImage, match=f"at least {MIN_SIDE}"):
        decode_image(data)


def test_tiny_dicom_is_refused(small_radiograph):
    with pytest.raises(UnsupportedImage, match=f"at least {MIN_SIDE}"):
        decode_image(_dicom(np.ascontiguousarray(small_radiograph[:32, :32])))


def test_image_exactly_the_minimum_side_is_accepted(small_radiograph):
    data = _png(Image.fromarray(small_radiograph).resize((MIN_SIDE, MIN_SIDE)))

    assert decode_image(data).shape == (MIN_SIDE, MIN_SIDE)


# --- decode(): the image and what else decoding learnt -------------------------------------

# Every training copy of the fixture set; one in 25 of the full data set.
_TRAINING = [row["path"] for row in _manifest() if row["path"].startswith("chest_xray/")]
TRAINING_SAMPLE = _TRAINING[:: 1 if len(_TRAINING) < 1000 else 25] or ["chest_xray/missing"]


@pytest.mark.parametrize("path", TRAINING_SAMPLE)
def test_training_copies_decode_and_preprocess_exactly_as_they_always_have(radiograph_set, path):
    # PREPROCESSING_VERSION stays "1" only if the model's own training images are untouched:
    # Pillow's grey conversion, the percentile stretch and the bilinear squash, nothing else.
    data = _read(radiograph_set / path)
    grey = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float32)

    decoded = decode(data)

    np.testing.assert_array_equal(decoded.image, normalize_intensity(grey))
    np.testing.assert_array_equal(preprocess(data, 224), to_model_input(decoded.image, 224))
    assert decoded.header is None and decoded.warnings == ()
    assert decoded.colourfulness == 0.0  # RGB-coded, but every pixel has equal channels
    assert PREPROCESSING_VERSION == "1"


def test_decode_image_is_the_image_of_decode(small_radiograph, reference_jpeg):
    for data in (
        reference_jpeg,
        _png(Image.fromarray(small_radiograph)),
        _dicom(small_radiograph.astype(np.uint16) * 16, bits_stored=12),
    ):
        np.testing.assert_array_equal(decode_image(data), decode(data).image)


def test_decoded_is_immutable(small_radiograph):
    decoded = decode(_png(Image.fromarray(small_radiograph)))

    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.colourfulness = 1.0  # type: ignore[misc]


def test_decode_raises_the_same_errors_as_decode_image(reference_jpeg):
    with pytest.raises(UnreadableImage, match="empty"):
        decode(b"")
    with pytest.raises(UnreadableImage):
        decode(reference_jpeg[:500])
    with pytest.raises(ImageTooLarge):
        decode(reference_jpeg, max_pixels=1_000_000)


def test_dicom_decode_carries_its_header_facts(small_radiograph):
    data = _dicom(small_radiograph, BodyPartExamined="CHEST", ViewPosition="AP", PatientAge="004Y")

    decoded = decode(data)

    assert decoded.header is not None
    assert (decoded.header.modality, decoded.header.body_part) == ("CR", "CHEST")
    assert decoded.header.view_position == "AP" and decoded.header.age_years == 4.0
    assert decoded.colourfulness == 0.0 and decoded.warnings == ()


def _photograph(side: int = 256) -> np.ndarray:
    """A colourful synthetic picture: red, green and blue ramps crossing each other."""
    ramp = np.linspace(0, 255, side)
    red, green = np.meshgrid(ramp, ramp)
    blue = 255 - (red + green) / 2
    return np.dstack([red, green, blue]).astype(np.uint8)


def _grey_with_chroma_noise(grey: np.ndarray) -> np.ndarray:
    """A grey radiograph with independent noise of up to 12 grey levels in each channel."""
    noise = np.random.default_rng(5).integers(-12, 13, (*grey.shape, 3))
    return np.clip(grey[..., np.newaxis].astype(int) + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "make",
    [
        lambda grey: _png(Image.fromarray(grey)),
        lambda grey: _encoded(Image.fromarray(grey), "JPEG"),
        lambda grey: _png(Image.fromarray(grey.astype(np.uint16) * 257)),
        lambda grey: _png(Image.fromarray(np.repeat(grey[..., np.newaxis], 3, axis=-1))),
        lambda grey: _png(Image.fromarray(grey).convert("LA")),
        lambda grey: _dicom(grey),
    ],
    ids=["grey-png", "grey-jpeg", "16bit-png", "rgb-equal-channels-png", "la-png", "dicom"],
)
def test_grey_files_have_zero_colourfulness(small_radiograph, make):
    assert decode(make(small_radiograph)).colourfulness == 0.0


def test_grey_radiograph_saved_as_colour_jpeg_has_only_chroma_noise(small_radiograph):
    # JPEG's subsampled, quantised chroma keeps only a trace of the per-pixel noise.
    data = _encoded(Image.fromarray(_grey_with_chroma_noise(small_radiograph)), "JPEG")

    assert 0.0 < decode(data).colourfulness < 0.02


def test_a_burnt_in_coloured_marker_adds_little_colourfulness(small_radiograph):
    rgb = np.repeat(small_radiograph[..., np.newaxis], 3, axis=-1)
    rgb[:16, :32] = (255, 0, 0)  # a red "L" marker: 0.6 % of the pixels

    assert decode(_png(Image.fromarray(rgb))).colourfulness < 0.02


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_colour_photograph_is_very_colourful(fmt):
    colourfulness = decode(_encoded(Image.fromarray(_photograph()), fmt)).colourfulness

    assert colourfulness > 0.3


def test_colourfulness_matches_the_mean_channel_spread_of_a_small_image():
    picture = _photograph(100)  # below the sampling side: every pixel counts
    expected = (picture.max(axis=-1).astype(float) - picture.min(axis=-1)).mean() / 255

    assert decode(_png(Image.fromarray(picture))).colourfulness == pytest.approx(expected, rel=1e-5)


def test_palette_png_is_measured_through_its_palette(small_radiograph):
    indices = (small_radiograph // 2).astype(np.uint8)
    colourful = Image.frombytes("P", indices.shape[::-1], indices.tobytes())
    colourful.putpalette([v for i in range(256) for v in (i, 255 - i, 128)])
    grey = Image.frombytes("P", indices.shape[::-1], indices.tobytes())
    grey.putpalette([v for i in range(256) for v in (i, i, i)])

    assert decode(_png(colourful)).colourfulness > 0.2
    assert decode(_png(grey)).colourfulness == 0.0


def test_transparent_colour_counts_as_the_black_it_is_composited_onto(small_radiograph):
    margin = 40
    height, width = small_radiograph.shape
    canvas = Image.new("RGBA", (width + 2 * margin, height + 2 * margin), (255, 0, 0, 0))
    canvas.paste(Image.fromarray(small_radiograph).convert("RGBA"), (margin, margin))

    assert decode(_png(canvas)).colourfulness == 0.0


def test_colour_dicom_with_equal_channels_has_zero_colourfulness(small_radiograph):
    rgb = np.repeat(small_radiograph[..., np.newaxis], 3, axis=-1)

    assert decode(_dicom(rgb, photometric="RGB")).colourfulness == 0.0


def test_colourfulness_of_a_large_image_costs_under_two_milliseconds():
    from ml.preprocessing import _colourfulness  # the part decode adds to every upload

    picture = Image.fromarray(
        np.random.default_rng(0).integers(0, 256, (2000, 2000, 3), dtype=np.uint8)
    )
    picture.load()
    timings = []
    for _ in range(30):
        start = time.perf_counter()
        colourfulness = _colourfulness(picture)
        timings.append(time.perf_counter() - start)

    assert 0.45 < colourfulness < 0.55  # max - min of three uniform values: half the range
    assert min(timings) < 0.002, f"fastest of 30 runs took {min(timings) * 1000:.2f} ms"


# --- The array functions --------------------------------------------------------------------


def test_normalize_intensity_ignores_a_small_burnt_in_label(small_radiograph):
    raw = small_radiograph.astype(np.float32) * 4  # 0 .. 1020
    raw[:8, :20] = 4095  # a saturated marker: 160 px, 0.2 % of the image

    image = normalize_intensity(raw)

    assert np.all(image[:8, :20] == 1.0)
    body = np.delete(image.ravel(), np.ravel_multi_index(np.nonzero(raw == 4095), raw.shape))
    assert np.percentile(body, 99) > 0.9  # a min-max stretch would leave the body below 0.25


def test_normalize_intensity_is_the_same_for_any_bit_depth_and_offset(small_radiograph):
    as_8bit = normalize_intensity(small_radiograph)

    for raw in (small_radiograph * 16.0 + 100, small_radiograph * 257.0 - 30_000):
        np.testing.assert_allclose(normalize_intensity(raw), as_8bit, atol=1e-5)


def test_normalize_intensity_looks_up_8_and_16_bit_pixels_with_the_float_paths_numbers(
    small_radiograph,
):
    """Integer pixels are stretched through a table of every possible value: bit for bit
    what the float path gives the same values (real JPEG pixels and a 12-bit image)."""
    rng = np.random.default_rng(4)
    twelve_bit = rng.normal(2000, 600, (300, 420)).clip(0, 4095).astype(np.uint16)
    for raw in (small_radiograph.astype(np.uint8), twelve_bit):
        looked_up = normalize_intensity(raw)
        assert looked_up.dtype == np.float32
        np.testing.assert_array_equal(looked_up, normalize_intensity(raw.astype(np.float32)))


def test_normalize_intensity_falls_back_to_min_max_for_a_nearly_flat_image():
    raw = np.full((128, 128), 40.0)
    raw[60:63, 60:63] = 90.0  # 9 px: fewer than the 0.5 % percentile tail

    image = normalize_intensity(raw)

    assert image.dtype == np.float32
    assert image[61, 61] == 1.0 and image[0, 0] == 0.0


def test_normalize_intensity_refuses_a_constant_image():
    with pytest.raises(UnsupportedImage, match="blank"):
        normalize_intensity(np.full((100, 100), 7, dtype=np.uint16))


def test_to_model_input_squashes_without_cropping(small_radiograph):
    image = np.zeros((100, 300), dtype=np.float32)
    image[:10] = 1.0  # a bright top band and a bright right-hand column
    image[:, -30:] = 1.0

    model_input = to_model_input(image, 64)

    assert model_input.shape == (64, 64, 1) and model_input.dtype == np.float32
    assert model_input[:5, :40, 0].mean() > 0.9  # the band is still at the top
    assert model_input[20:, -5:, 0].mean() > 0.9  # and the column still on the right
    assert model_input[20:, :40, 0].max() < 0.1


def test_to_model_input_leaves_an_image_of_the_right_size_unchanged(expected_small):
    square = expected_small[:, :256]

    np.testing.assert_array_equal(to_model_input(square, 256)[..., 0], square)


def test_to_model_input_clips_to_the_unit_range():
    image = np.linspace(-1.0, 2.0, 128 * 128, dtype=np.float32).reshape(128, 128)

    model_input = to_model_input(image, 32)

    assert model_input.min() == 0.0 and model_input.max() == 1.0


def test_to_uint8_rounds_and_clips():
    values = np.array([0.0, 1 / 255, 0.5, 1.0, -0.5, 1.5], dtype=np.float32)

    result = to_uint8(values)

    assert result.dtype == np.uint8
    assert result.tolist() == [0, 1, 128, 255, 0, 255]


def test_preview_png_is_an_8bit_grey_thumbnail_keeping_the_aspect_ratio(expected):
    preview = Image.open(io.BytesIO(preview_png(expected, max_side=512)))

    assert preview.format == "PNG" and preview.mode == "L"
    assert preview.size == (512, round(512 * 1009 / 1368))


# --- Dependencies ---------------------------------------------------------------------------


def test_importing_preprocessing_data_and_overlay_does_not_import_tensorflow():
    code = (
        "import sys, ml.preprocessing, ml.data, ml.overlay; "
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'django') if m in sys.modules); "
        "sys.exit(', '.join(heavy) or None)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 0, f"imported: {result.stderr.strip()}"
