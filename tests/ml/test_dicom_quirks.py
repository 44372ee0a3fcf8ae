"""ml.preprocessing.decode on DICOM as hospitals write it: legacy files without preamble,
display windows that do not fit, Presentation LUT Shape, modality and VOI LUT sequences,
JPEG-LS and JPEG 2000, and real files from pydicom-data.

Each synthetic file is a 256 x 256 12-bit test object: a dense disc (stored 3500) on a
left-to-right gradient (200 at the left, 1220 at the right), so a correct decode shows a
white disc, a dark left edge and a greyer right edge.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_decoder, get_encoder
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
)

from ml.header import Population, header_refusal
from ml.preprocessing import (
    WINDOW_FALLBACK_WARNING,
    UnreadableImage,
    UnsupportedImage,
    decode,
    decode_image,
    is_dicom,
    normalize_intensity,
    to_model_input,
)

DX_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
SIDE = 256
DISC = 3500
_ROWS, _COLUMNS = np.mgrid[:SIDE, :SIDE]
IN_DISC = (_ROWS - SIDE // 2) ** 2 + (_COLUMNS - SIDE // 2) ** 2 < 60**2
LEFT_EDGE, RIGHT_EDGE = (slice(None), slice(0, 8)), (slice(None), slice(-8, None))


def _object(bits: int = 12) -> np.ndarray:
    """The test object, dense = high; at 16 bits scaled to the full range."""
    stored = (200 + _COLUMNS * 4).astype(np.uint16)
    stored[IN_DISC] = DISC
    return stored * 16 if bits == 16 else stored


def _dataset(
    pixels: np.ndarray, *, photometric: str = "MONOCHROME2", bits: int = 12, **elements: object
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DX_IMAGE_STORAGE
    ds.SOPClassUID = DX_IMAGE_STORAGE
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.PatientAge = "003Y"
    ds.set_pixel_data(pixels, photometric, bits)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def _part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _legacy(ds: Dataset, *, implicit: bool = True) -> bytes:
    """The dataset alone, as older modalities write it: no preamble, no DICM, no file meta."""
    bare = Dataset()
    bare.update(ds)
    buffer = io.BytesIO()
    bare.save_as(buffer, implicit_vr=implicit, little_endian=True, enforce_file_format=False)
    return buffer.getvalue()


def _assert_reads_white_disc_on_rising_gradient(image: np.ndarray) -> None:
    assert image.shape == (SIDE, SIDE) and image.dtype == np.float32
    assert image[IN_DISC].mean() > 0.99  # dense reads white
    assert image[LEFT_EDGE].mean() < 0.05  # the thin end of the gradient is dark
    assert 0.1 < image[RIGHT_EDGE].mean() < 0.6  # and it rises to the right


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """The plain Part 10 MONOCHROME2 file's decode: what every quirk should come back to."""
    image = decode_image(_part10(_dataset(_object())))
    _assert_reads_white_disc_on_rising_gradient(image)
    return image


# --- Legacy files without preamble ----------------------------------------------------------


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit-vr", "explicit-vr"])
def test_legacy_file_without_preamble_or_meta_decodes_like_its_part10_twin(reference, implicit):
    data = _legacy(_dataset(_object()), implicit=implicit)
    assert not is_dicom(data) and data[:2] == b"\x08\x00"
    assert b"DICM" not in data[:200]

    decoded = decode(data)

    np.testing.assert_array_equal(decoded.image, reference)
    assert decoded.header is not None and decoded.header.modality == "DX"
    assert decoded.header.age_years == 3.0
    assert decoded.warnings == () and decoded.colourfulness == 0.0


def test_legacy_16bit_file_applies_its_rescale_and_window():
    # Rescaled values run from -600 to 6000; the window spans -1000 to 7000.
    ds = _dataset(
        _object(), RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=3000, WindowWidth=8000
    )

    legacy, part10 = decode(_legacy(ds)), decode(_part10(ds))

    np.testing.assert_array_equal(legacy.image, part10.image)
    _assert_reads_white_disc_on_rising_gradient(legacy.image)


def test_file_missing_only_its_preamble_decodes(reference):
    data = _part10(_dataset(_object()))[132:]  # starts at the (0002,0000) meta group
    assert data[:2] == b"\x02\x00"

    np.testing.assert_array_equal(decode_image(data), reference)


def test_real_legacy_palette_colour_file_is_read_as_dicom_and_refused_as_colour():
    path = get_testdata_file("OT-PAL-8-face.dcm")  # a photograph, implicit VR, no preamble
    assert path is not None
    data = Path(path).read_bytes()
    assert not is_dicom(data) and data[:2] == b"\x08\x00"

    with pytest.raises(UnsupportedImage, match=r"Colour DICOM \(PALETTE COLOR\)"):
        decode(data)


def test_real_legacy_file_without_pixel_data_stays_unreadable_as_before():
    path = get_testdata_file("ExplVR_LitEndNoMeta.dcm")  # an RT plan: a header, no image
    assert path is not None

    with pytest.raises(UnreadableImage, match="not a readable PNG, JPEG or DICOM image"):
        decode(Path(path).read_bytes())


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom describes the noise it parses
@pytest.mark.parametrize("start", [b"\x08\x00", b"\x02\x00"])
def test_random_bytes_that_happen_to_start_like_a_legacy_tag_stay_unreadable(start):
    noise = start + np.random.default_rng(3).bytes(20_000)

    with pytest.raises(UnreadableImage, match="not a readable PNG, JPEG or DICOM image"):
        decode(noise)


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.999])
def test_legacy_file_truncated_in_its_pixel_data_is_unreadable(fraction):
    data = _legacy(_dataset(_object()))

    with pytest.raises(UnreadableImage):
        decode(data[: int(len(data) * fraction)])


def test_a_corrupt_rle_frame_is_unreadable_not_a_decoder_panic():
    """pylibjpeg-rle (Rust) panics on it; pyo3's PanicException is a BaseException that
    would get past every `except Exception` of the worker."""
    from pydicom.uid import RLELossless

    ds = _dataset(_object())
    ds.compress(RLELossless)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = bytearray(buffer.getvalue())
    data[-400:-20] = b"\xff" * 380  # the segment runs past its end

    with pytest.raises(UnreadableImage):
        decode(bytes(data))


# --- Display windows that do not fit -------------------------------------------------------


@pytest.mark.parametrize(
    ("center", "width"),
    [(30_000, 100), (-5_000, 100)],
    ids=["above-the-data", "below-the-data"],
)
def test_window_outside_the_data_falls_back_to_the_full_range_with_a_warning(
    reference, center, width
):
    decoded = decode(_part10(_dataset(_object(), WindowCenter=center, WindowWidth=width)))

    assert decoded.warnings == (WINDOW_FALLBACK_WARNING,)
    np.testing.assert_array_equal(decoded.image, reference)


def test_window_clipping_all_but_a_sliver_falls_back():
    ramp = np.tile(np.linspace(0, 4095, SIDE).astype(np.uint16), (SIDE, 1))
    top = np.percentile(ramp, 99.2)  # the window shows the brightest 0.8 % only

    decoded = decode(_part10(_dataset(ramp, WindowCenter=top + 100, WindowWidth=200)))

    assert decoded.warnings == (WINDOW_FALLBACK_WARNING,)
    np.testing.assert_allclose(decoded.image, normalize_intensity(ramp), atol=1e-6)


def test_window_clipping_much_but_not_nearly_all_is_kept():
    ramp = np.tile(np.linspace(0, 4095, SIDE).astype(np.uint16), (SIDE, 1))

    decoded = decode(_part10(_dataset(ramp, WindowCenter=2048, WindowWidth=200)))

    assert decoded.warnings == ()
    assert 0.4 < np.mean(decoded.image == 0.0) < 0.5  # the window really was applied
    assert 0.4 < np.mean(decoded.image == 1.0) < 0.5


def test_window_on_data_that_is_itself_nearly_all_one_value_is_kept():
    # 99.5 % background: clipping it is not the window's fault.
    stored = np.full((SIDE, SIDE), 1000, dtype=np.uint16)
    stored[120:137, 120:137] = np.arange(17, dtype=np.uint16) * 100 + 1200

    decoded = decode(_part10(_dataset(stored, WindowCenter=2000, WindowWidth=800)))

    assert decoded.warnings == ()
    assert decoded.image[stored <= 1600].max() == 0.0  # the window's lower clip is kept


@pytest.mark.parametrize(
    "elements",
    [
        {"WindowCenter": 2000, "WindowWidth": 0},  # LINEAR needs a width of at least 1
        {"WindowCenter": 2000, "WindowWidth": 2000, "VOILUTFunction": "CUBIC"},
    ],
    ids=["zero-width", "unknown-function"],
)
def test_an_invalid_window_falls_back_with_a_warning_instead_of_refusing(reference, elements):
    decoded = decode(_part10(_dataset(_object(), **elements)))

    assert decoded.warnings == (WINDOW_FALLBACK_WARNING,)
    np.testing.assert_array_equal(decoded.image, reference)


def test_a_constant_image_with_a_window_is_still_refused_as_blank():
    stored = np.full((SIDE, SIDE), 1200, dtype=np.uint16)

    with pytest.raises(UnsupportedImage, match="blank"):
        decode(_part10(_dataset(stored, WindowCenter=30_000, WindowWidth=100)))


def test_the_window_warning_is_plain_words_without_figures():
    assert WINDOW_FALLBACK_WARNING == (
        "The file's display window did not fit its pixel values; the full data range was used."
    )


# --- Presentation LUT Shape -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("photometric", "shape", "stored_dark_dense"),
    [
        ("MONOCHROME2", None, False),
        ("MONOCHROME2", "IDENTITY", False),
        ("MONOCHROME2", "INVERSE", True),
        ("MONOCHROME1", None, True),
        ("MONOCHROME1", "INVERSE", True),  # DX pairs them: one inversion, not two
        ("MONOCHROME1", "IDENTITY", True),
    ],
)
def test_inversion_happens_once_for_monochrome1_or_presentation_lut_inverse(
    reference, photometric, shape, stored_dark_dense
):
    stored = _object()
    if stored_dark_dense:
        stored = (4095 - stored).astype(np.uint16)
    elements = {} if shape is None else {"PresentationLUTShape": shape}

    image = decode_image(_part10(_dataset(stored, photometric=photometric, **elements)))

    np.testing.assert_allclose(image, reference, atol=1e-6)


def test_inverse_presentation_lut_with_a_window_inverts_the_windowed_image(reference):
    stored = (4095 - _object()).astype(np.uint16)
    ds = _dataset(stored, PresentationLUTShape="INVERSE", WindowCenter=2048, WindowWidth=4096)

    _assert_reads_white_disc_on_rising_gradient(decode_image(_part10(ds)))


# --- Modality LUT and VOI LUT sequences -----------------------------------------------------


def _lut_item(values: np.ndarray, *, first: int = 0, depth: int = 16, vr: str = "US") -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(values), first, depth]
    # LUT Data is "US or OW": a list of numbers, or little-endian words as raw bytes.
    data = [int(v) for v in values] if vr == "US" else values.astype("<u2").tobytes()
    item.add_new(0x00283006, vr, data)
    return item


# Square-root curves: non-linear, so applying them or not gives visibly different images.
_SQRT_12BIT = np.round(4095 * np.sqrt(np.arange(4096) / 4095)).astype(np.uint16)
_SQRT_16BIT = np.round(65535 * np.sqrt(np.arange(4096) / 4095)).astype(np.uint16)


@pytest.mark.parametrize(
    ("lut", "depth", "vr"),
    [(_SQRT_16BIT, 16, "US"), (_SQRT_12BIT, 12, "US"), (_SQRT_12BIT, 12, "OW")],
    ids=["16-bit", "12-bit", "12-bit-as-OW"],
)
def test_modality_lut_sequence_maps_stored_values_non_linearly(lut, depth, vr):
    stored = _object()
    item = _lut_item(lut, depth=depth, vr=vr)
    item.ModalityLUTType = "US"  # unspecified units
    ds = _dataset(stored, ModalityLUTSequence=Sequence([item]))

    image = decode_image(_part10(ds))

    # 12-bit entries used to fail inside pydicom (it asks numpy for a "uint12" dtype).
    expected = normalize_intensity(lut[stored])
    np.testing.assert_allclose(image, expected, atol=1e-6)
    assert np.abs(image - normalize_intensity(stored)).max() > 0.1  # the curve mattered
    _assert_reads_white_disc_on_rising_gradient(image)


def test_modality_lut_with_a_first_mapped_value_clamps_values_below_it():
    stored = _object()
    lut = np.linspace(0, 60_000, 3000).astype(np.uint16)  # covers stored values 1000 .. 3999
    item = _lut_item(lut, first=1000)
    item.ModalityLUTType = "US"

    image = decode_image(_part10(_dataset(stored, ModalityLUTSequence=Sequence([item]))))

    assert np.all(image[stored < 1000] == image[stored < 1000].flat[0])  # all at entry 0
    assert image[IN_DISC].min() == 1.0


def test_voi_lut_sequence_maps_modality_values_non_linearly():
    stored = _object()
    ds = _dataset(stored, VOILUTSequence=Sequence([_lut_item(_SQRT_16BIT)]))

    image = decode_image(_part10(ds))

    np.testing.assert_allclose(image, normalize_intensity(_SQRT_16BIT[stored]), atol=1e-6)
    assert np.abs(image - normalize_intensity(stored)).max() > 0.1
    _assert_reads_white_disc_on_rising_gradient(image)


def test_voi_lut_sequence_takes_precedence_over_a_window():
    stored = _object()
    ds = _dataset(
        stored,
        VOILUTSequence=Sequence([_lut_item(_SQRT_16BIT)]),
        WindowCenter=2048,
        WindowWidth=100,
    )

    np.testing.assert_allclose(
        decode_image(_part10(ds)), normalize_intensity(_SQRT_16BIT[stored]), atol=1e-6
    )


def test_voi_lut_that_maps_nearly_everything_to_one_value_falls_back(reference):
    crushing = np.zeros(4096, dtype=np.uint16)
    crushing[4000:] = 65535  # only values the object does not hold are shown
    ds = _dataset(_object(), VOILUTSequence=Sequence([_lut_item(crushing)]))

    decoded = decode(_part10(ds))

    assert decoded.warnings == (WINDOW_FALLBACK_WARNING,)
    np.testing.assert_array_equal(decoded.image, reference)


def test_monochrome1_with_modality_and_voi_luts_still_reads_dense_as_white():
    stored = (4095 - _object()).astype(np.uint16)
    modality = _lut_item(_SQRT_12BIT, depth=12)
    modality.ModalityLUTType = "US"
    ds = _dataset(
        stored,
        photometric="MONOCHROME1",
        ModalityLUTSequence=Sequence([modality]),
        VOILUTSequence=Sequence([_lut_item(np.arange(4096, dtype=np.uint16) * 16)]),
    )

    _assert_reads_white_disc_on_rising_gradient(decode_image(_part10(ds)))


def test_real_modality_lut_file_from_pydicom_data():
    path = get_testdata_file("mlut_18.dcm")  # signed stored values, LUT starting at -2048
    assert path is not None
    ds = pydicom.dcmread(path)
    lut = np.asarray(ds.ModalityLUTSequence[0].LUTData)

    image = decode_image(Path(path).read_bytes())

    expected = normalize_intensity(lut[np.clip(ds.pixel_array.astype(int) + 2048, 0, 4095)])
    np.testing.assert_allclose(image, expected, atol=1e-6)


def test_real_voi_lut_file_from_pydicom_data():
    path = get_testdata_file("vlut_04.dcm")
    assert path is not None
    ds = pydicom.dcmread(path)
    lut = np.asarray(ds.VOILUTSequence[0].LUTData)

    image = decode_image(Path(path).read_bytes())

    np.testing.assert_allclose(image, normalize_intensity(lut[ds.pixel_array]), atol=1e-6)


# --- JPEG-LS and JPEG 2000 ------------------------------------------------------------------


@pytest.fixture
def runtime_jpegls_decoder(monkeypatch):
    """Decode JPEG-LS as production does: pyjpegls is a test-only encoder, so take it away
    and leave pylibjpeg-libjpeg, which requirements.txt installs."""
    for syntax in (JPEGLSLossless, JPEGLSNearLossless):
        decoder = get_decoder(syntax)
        monkeypatch.delitem(decoder._available, "pyjpegls", raising=False)
        assert "pylibjpeg" in decoder.available_plugins


def _compressed(pixels: np.ndarray, syntax: str, bits: int, **options: object) -> bytes:
    if not get_encoder(syntax).is_available:
        pytest.skip(f"no pydicom encoder plugin for {syntax.name} (pip install pyjpegls)")
    ds = _dataset(pixels, bits=bits)
    ds.compress(syntax, **options)
    assert ds.file_meta.TransferSyntaxUID == syntax
    return _part10(ds)


@pytest.mark.parametrize("bits", [12, 16])
def test_jpeg_ls_lossless_decodes_identically_to_uncompressed(runtime_jpegls_decoder, bits):
    pixels = _object(bits)
    data = _compressed(pixels, JPEGLSLossless, bits)

    plain = _part10(_dataset(pixels, bits=bits))
    np.testing.assert_array_equal(decode_image(data), decode_image(plain))


def test_jpeg_ls_near_lossless_stays_within_its_error_bound(runtime_jpegls_decoder, reference):
    data = _compressed(_object(), JPEGLSNearLossless, 12, jls_error=3)

    image = decode_image(data)

    # Stored values differ by at most 3 of the ~3300 levels the stretch spans (and its
    # percentiles by as much again).
    assert np.abs(image - reference).max() < 10 / 3300
    _assert_reads_white_disc_on_rising_gradient(image)


@pytest.mark.parametrize("bits", [12, 16])
def test_jpeg2000_lossless_monochrome1_decodes_with_the_disc_white(reference, bits):
    stored = ((1 << bits) - 1 - _object(bits)).astype(np.uint16)
    if not get_encoder(JPEG2000Lossless).is_available:
        pytest.skip("pylibjpeg-openjpeg cannot encode JPEG 2000 here")
    ds = _dataset(stored, photometric="MONOCHROME1", bits=bits)
    ds.compress(JPEG2000Lossless)

    np.testing.assert_allclose(decode_image(_part10(ds)), reference, atol=1e-6)


def test_jpeg2000_lossy_decodes_close_to_the_original(reference):
    data = _compressed(_object(), JPEG2000, 12, j2k_cr=[20])

    image = decode_image(data)

    assert np.corrcoef(image.ravel(), reference.ravel())[0, 1] > 0.999
    _assert_reads_white_disc_on_rising_gradient(image)


def test_real_jpeg_ls_lossless_mr_decodes_like_its_uncompressed_twin(runtime_jpegls_decoder):
    compressed, plain = (
        get_testdata_file("MR_small_jpeg_ls_lossless.dcm"),
        get_testdata_file("MR_small.dcm"),
    )
    assert compressed is not None and plain is not None

    decoded = decode(Path(compressed).read_bytes())

    np.testing.assert_array_equal(decoded.image, decode_image(Path(plain).read_bytes()))
    assert decoded.header is not None and decoded.header.modality == "MR"


def test_real_lossy_jpeg2000_cr_decodes_close_to_its_uncompressed_twin():
    lossy, plain = get_testdata_file("RG1_J2KI.dcm"), get_testdata_file("RG1_UNCR.dcm")
    if lossy is None or plain is None:
        pytest.skip("pydicom-data would have to download RG1_J2KI.dcm / RG1_UNCR.dcm")

    image, original = decode_image(Path(lossy).read_bytes()), decode_image(Path(plain).read_bytes())

    # The JPEG 2000 file is read one level down its resolution pyramid (DECODE_LONG_SIDE);
    # what the model sees is compared.
    assert image.shape == (978, 921) and original.shape == (1955, 1841)
    seen, seen_original = to_model_input(image, 224), to_model_input(original, 224)
    assert np.corrcoef(seen.ravel(), seen_original.ravel())[0, 1] > 0.99


# --- Real files: header facts and the rules --------------------------------------------------


def _real(name: str) -> bytes:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom-data would have to download {name}")
    return Path(path).read_bytes()


def test_real_adult_cr_chest_decodes_with_its_header_and_is_refused_by_age():
    decoded = decode(_real("RG1_UNCR.dcm"))

    facts = decoded.header
    assert facts is not None
    assert (facts.modality, facts.body_part, facts.view_position) == ("CR", "CHEST", "PA")
    assert facts.age_source == "dates" and 64 < facts.age_years < 65
    assert decoded.colourfulness == 0.0 and decoded.warnings == ()
    assert decoded.image.min() == 0.0 and decoded.image.max() == 1.0
    assert header_refusal(facts, Population()) == (
        "outside_intended_use",
        "The patient is 64 years old; the AI was validated on children aged 1 to 5 years.",
    )


def test_real_cr_of_a_tibia_is_refused_by_body_part():
    decoded = decode(_real("RG3_UNCR.dcm"))

    assert decoded.header is not None and decoded.header.body_part == "EXTREMITY"
    assert header_refusal(decoded.header, Population()) == (
        "not_chest_radiograph",
        "The DICOM file says the body part examined is EXTREMITY; ChestNet analyses chest "
        "radiographs (CR or DX).",
    )


def test_real_ct_slice_decodes_and_is_refused_by_modality():
    decoded = decode(_real("CT_small.dcm"))

    assert decoded.image.shape == (128, 128)
    assert header_refusal(decoded.header, Population()) == (
        "not_chest_radiograph",
        "The DICOM file is a CT image (Modality CT); ChestNet analyses chest radiographs "
        "(CR or DX).",
    )


def test_png_and_jpeg_have_no_header():
    for fmt in ("PNG", "JPEG"):
        buffer = io.BytesIO()
        Image.fromarray((_object() // 16).astype(np.uint8)).save(buffer, format=fmt)
        assert decode(buffer.getvalue()).header is None
