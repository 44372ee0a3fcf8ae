"""File bytes to model input: the one path shared by training, evaluation and serving.

No TensorFlow here, so the web process can validate and preview uploads cheaply.
"""

from __future__ import annotations

import copy
import functools
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Final, Protocol, cast

import numpy as np
from PIL import Image, UnidentifiedImageError

from ml.header import HeaderFacts, code_meaning, element_text, read_header

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# Bump whenever the output of `preprocess` changes for the same bytes; artifacts record it.
PREPROCESSING_VERSION: Final = "1"

# A 4,300 x 4,300 flat-panel detector is ~18.5 Mpx; anything far beyond is not a radiograph.
MAX_PIXELS: Final = 50_000_000
MIN_SIDE: Final = 64
# Intensities outside these percentiles are clipped; this absorbs burnt-in labels, borders
# and exposure differences between sites (see docs/model.md).
LOW_PERCENTILE: Final = 0.5
HIGH_PERCENTILE: Final = 99.5

_DICOM_MAGIC_OFFSET: Final = 128
# Files from older modalities start straight with a little-endian tag of group 0008 (or
# 0002 when only the preamble is missing): no preamble, often no file meta header at all.
_LEGACY_DICOM_STARTS: Final = (b"\x08\x00", b"\x02\x00")
_MONOCHROME: Final = frozenset({"MONOCHROME1", "MONOCHROME2"})
_RGB_DECODED: Final = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
_PERCENTILE_SAMPLE: Final = 250_000
PREVIEW_JPEG_QUALITY: Final = 95
# JPEG 2000 radiographs are decoded at the smallest level of their resolution pyramid whose
# long side is still this many pixels (four times the model's input, near the preview's).
DECODE_LONG_SIDE: Final = 896
_J2K_SYNTAXES: Final = frozenset(
    {
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203",
    }
)
# Colourfulness is a mean over a nearest-neighbour thumbnail this wide: 16k pixels pin the
# mean far more tightly than the gate needs, in well under a millisecond.
_COLOUR_SAMPLE_SIDE: Final = 128
_GREY_MODES: Final = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"})
# A VOI window that leaves more than this fraction of pixels at one end (but the data
# itself does not) has been set for other data: a test pattern, another detector, a typo.
_MAX_CLIPPED_FRACTION: Final = 0.98
WINDOW_FALLBACK_WARNING: Final = (
    "The file's display window did not fit its pixel values; the full data range was used."
)


class SeekableFile(Protocol):
    """A binary file open for reading: an upload spooled to disk, a Django File, BytesIO."""

    def read(self, size: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...


class ImageError(ValueError):
    """Base class: these bytes cannot be turned into a chest radiograph."""


class UnreadableImage(ImageError):
    """Empty, truncated, corrupt or not an image at all."""


class UnsupportedImage(ImageError):
    """A valid file we will not interpret (multi-frame, colour DICOM, blank, tiny)."""


class ImageTooLarge(UnsupportedImage):
    """More pixels than any radiograph has: refused before decoding (decompression bomb)."""


@dataclass(frozen=True)
class Decoded:
    """A decoded file: the image and what else decoding learnt about it."""

    image: np.ndarray = field(repr=False)  # 2-D float32 in [0, 1], white = dense
    header: HeaderFacts | None  # DICOM only
    # Mean (max - min channel) / full scale: 0.0 for grey files; a grey radiograph saved as
    # RGB JPEG stays below ~0.02 (chroma noise), a photograph is far above.
    colourfulness: float
    warnings: tuple[str, ...] = ()  # plain-English notes for the reader, no patient data


@dataclass(frozen=True)
class _Raw:
    """Decoded pixels before the intensity stretch."""

    pixels: np.ndarray
    header: HeaderFacts | None = None
    colourfulness: float = 0.0
    warnings: tuple[str, ...] = ()


def is_dicom(data: bytes) -> bool:
    """Part 10 DICOM (preamble and 'DICM'); see `image_format` for legacy files too."""
    return data[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM"


def image_format(data: bytes) -> str:
    """The format of bytes that `decode` reads: "dicom", "png" or "jpeg", for labels,
    content types and file suffixes. Legacy DICOM (no preamble, often no file meta) is
    recognised from its header alone; no pixels are decoded."""
    if is_dicom(data) or _legacy_dicom_header(data) is not None:
        return "dicom"
    return "png" if data.startswith(b"\x89PNG") else "jpeg"


@dataclass(frozen=True)
class Inspected:
    """What the header of a file says, read without decoding its pixels."""

    format: str  # "dicom", "png" or "jpeg"
    width: int
    height: int


def inspect(source: bytes | SeekableFile, *, max_pixels: int = MAX_PIXELS) -> Inspected:
    """Check a file from its header alone: a PNG, JPEG or DICOM image, one frame, a sane
    size (not a decompression bomb), pixel data present. Raises ImageError as `decode`
    would for those faults; what only decoding finds (truncated pixel data, a blank image)
    `decode` reports later, in the worker. `source`: the file's bytes, or a seekable binary
    file read from its start (an upload spooled to disk): only the header is read from it,
    so memory stays small whatever the file's size."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    handle.seek(0)
    head = handle.read(_DICOM_MAGIC_OFFSET + 4)
    if not head:
        raise UnreadableImage("The file is empty.")
    if is_dicom(head) or _legacy_dicom_header(handle) is not None:
        header = _inspect_dicom(handle, max_pixels, part10=is_dicom(head))
    else:
        with _opened_raster(handle, max_pixels) as image:
            header = Inspected(_raster_format(head), image.width, image.height)
    _check_shape((header.height, header.width))
    return header


def _raster_format(head: bytes) -> str:
    return "png" if head.startswith(b"\x89PNG") else "jpeg"


# Header values longer than this (the pixel data) are skipped by `inspect`, not read: pixel
# data cut short is found by `decode`, in the worker, as before.
_DEFERRED_VALUE_BYTES: Final = 64 * 1024


def _inspect_dicom(handle: SeekableFile, max_pixels: int, *, part10: bool) -> Inspected:
    import pydicom

    try:
        handle.seek(0)
        ds = pydicom.dcmread(
            cast(BinaryIO, handle), force=not part10, defer_size=_DEFERRED_VALUE_BYTES
        )
        _check_dicom_geometry(ds, max_pixels)
        return Inspected("dicom", int(ds.Columns), int(ds.Rows))
    except ImageError:
        raise
    except Exception as exc:  # pydicom parses elements lazily: corrupt headers fail anywhere
        raise UnreadableImage("The DICOM file is malformed or truncated.") from exc


@dataclass(frozen=True)
class Acquisition:
    """Who made an image and how, from its header, for monitoring the inputs a site sends
    (the mix of scanners, sizes and bit depths): "" or 0 where the file does not say."""

    format: str = ""
    modality: str = ""
    manufacturer: str = ""
    width: int = 0
    height: int = 0
    bits_stored: int = 0
    # View Position (PA, AP, LL...), else the View Code Sequence's meaning: what a reader
    # sees in the review page's thumbnail strip. "" where the file does not say (PNG, JPEG).
    view_position: str = ""


def acquisition(data: bytes) -> Acquisition:
    """The acquisition facts of PNG, JPEG or DICOM bytes, read from the header alone.
    Never raises: an unreadable file gives the empty facts."""
    try:
        if is_dicom(data) or _legacy_dicom_header(data) is not None:
            import pydicom

            ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
            return Acquisition(
                format="dicom",
                modality=str(ds.get("Modality", "") or "").strip().upper()[:16],
                manufacturer=str(ds.get("Manufacturer", "") or "").strip()[:64],
                width=int(ds.get("Columns", 0) or 0),
                height=int(ds.get("Rows", 0) or 0),
                bits_stored=int(ds.get("BitsStored", 0) or 0),
                view_position=_view_position(ds),
            )
        with Image.open(io.BytesIO(data)) as image:
            bits = 16 if image.mode in {"I;16", "I;16B", "I;16L", "I"} else 8
            return Acquisition(image_format(data), "", "", image.width, image.height, bits)
    except Exception:  # messy headers are the norm: facts are for monitoring, never a gate
        return Acquisition()


def _view_position(ds: Dataset) -> str:
    view = element_text(ds, "ViewPosition") or code_meaning(ds, "ViewCodeSequence")
    return " ".join(view.split())[:16]


def decode(data: bytes, *, max_pixels: int = MAX_PIXELS) -> Decoded:
    """Decode PNG, JPEG or DICOM bytes (Part 10, or legacy without preamble) to an image."""
    if not data:
        raise UnreadableImage("The file is empty.")
    raw = _decode_any(data, max_pixels)
    _check_shape(raw.pixels.shape)
    return Decoded(normalize_intensity(raw.pixels), raw.header, raw.colourfulness, raw.warnings)


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode PNG, JPEG or DICOM bytes to a 2-D float32 array in [0, 1], white = dense."""
    return decode(data, max_pixels=max_pixels).image


def preprocess(data: bytes, size: int, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """File bytes to the model input: float32 array (size, size, 1) in [0, 1]."""
    return to_model_input(decode_image(data, max_pixels=max_pixels), size)


def to_model_input(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a decoded image to the square model input, ignoring aspect ratio.

    The training copies were squashed to a square the same way, so uploads must be too.
    """
    if image.shape != (size, size):
        resized = Image.fromarray(image.astype(np.float32), mode="F").resize(
            (size, size), Image.Resampling.BILINEAR
        )
        image = np.asarray(resized, dtype=np.float32)
    return np.clip(image, 0.0, 1.0)[..., np.newaxis].astype(np.float32)


def normalize_intensity(raw: np.ndarray) -> np.ndarray:
    """Percentile-stretch any bit depth to [0, 1]; reject images with no contrast."""
    # Percentiles of a regular subsample: the same figures to within a grey level, and
    # ~20x faster on a 4,000-pixel-wide detector image.
    step = _sample_step(raw.size)
    sample = raw[::step, ::step].astype(np.float32)
    low, high = np.percentile(sample, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if high - low < 1e-6:
        low, high = float(raw.min()), float(raw.max())
    if high - low < 1e-6:
        raise UnsupportedImage("The image is blank (a single intensity everywhere).")
    if raw.dtype in (np.uint8, np.uint16):
        # Every possible value stretched once, then looked up: the same numbers as the
        # float path, in half the time on a full-size 8-bit image.
        return _stretch(np.arange(2 ** (8 * raw.itemsize), dtype=np.float32), low, high)[raw]
    return _stretch(raw.astype(np.float32, copy=False), low, high)


def _stretch(pixels: np.ndarray, low: float, high: float) -> np.ndarray:
    # In float64, as np.percentile's float64 scalars always made it (the same numbers as
    # ever), in place in one buffer: a third less time on a full-size image.
    stretched = pixels.astype(np.float64)
    stretched -= low
    stretched /= high - low
    np.clip(stretched, 0.0, 1.0, out=stretched)
    return stretched.astype(np.float32)


def _sample_step(size: int) -> int:
    return max(1, int(np.sqrt(size / _PERCENTILE_SAMPLE)))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A decoded [0, 1] image as 8-bit grayscale, for previews and overlays."""
    scaled = np.multiply(image, 255.0, dtype=np.float32)
    scaled += 0.5
    np.clip(scaled, 0.5, 255.5, out=scaled)  # = clip to [0, 1] first: the steps are monotonic
    return scaled.astype(np.uint8)


def _check_shape(shape: tuple[int, ...]) -> None:
    if len(shape) != 2:
        raise UnsupportedImage("Only single-channel (grayscale) images can be read.")
    if min(shape) < MIN_SIDE:
        raise UnsupportedImage(
            f"The image is {shape[1]}x{shape[0]} pixels; a radiograph needs at least "
            f"{MIN_SIDE} pixels on each side."
        )


def _check_pixel_count(width: int, height: int, frames: int, max_pixels: int) -> None:
    if width * height * frames > max_pixels:
        raise ImageTooLarge(
            f"The image declares {width}x{height} pixels"
            + (f" x {frames} frames" if frames > 1 else "")
            + f", more than the {max_pixels:,} allowed."
        )


def _decode_any(data: bytes, max_pixels: int) -> _Raw:
    if is_dicom(data):
        return _decode_dicom(data, max_pixels)
    legacy = _legacy_dicom(data)
    if legacy is not None:
        return _decode_dicom(legacy, max_pixels)
    return _decode_raster(data, max_pixels)


def _decode_raster(data: bytes, max_pixels: int) -> _Raw:
    with _opened_raster(data, max_pixels, load=True) as image:
        return _Raw(_raster_to_gray(image), colourfulness=_colourfulness(image))


@contextmanager
def _opened_raster(
    source: bytes | SeekableFile, max_pixels: int, *, load: bool = False
) -> Iterator[Image.Image]:
    """A PNG or JPEG (bytes, or a seekable file) checked from its header (format, size,
    frames); its pixels decoded only with `load`. Every fault becomes an ImageError with a
    sentence for the user."""
    try:
        with warnings.catch_warnings():
            # Pillow warns, then raises, on huge images; our own limit is checked first.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            handle = io.BytesIO(source) if isinstance(source, bytes) else source
            image = Image.open(cast(BinaryIO, handle))
            if image.format not in {"PNG", "JPEG", "MPO"}:
                raise UnsupportedImage(
                    f"{image.format} images are not accepted; upload PNG, JPEG or DICOM."
                )
            _check_pixel_count(image.width, image.height, 1, max_pixels)
            if getattr(image, "n_frames", 1) > 1 and image.format == "PNG":
                raise UnsupportedImage("Animated PNGs are not accepted.")
            if load:
                image.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(
            "The file is not a readable PNG, JPEG or DICOM image (it may be truncated or corrupt)."
        ) from exc
    yield image


def _colourfulness(image: Image.Image) -> float:
    if image.mode in _GREY_MODES:
        return 0.0
    side = _COLOUR_SAMPLE_SIDE
    sample = image.resize(
        (min(image.width, side), min(image.height, side)), Image.Resampling.NEAREST
    )
    rgba = np.asarray(sample.convert("RGBA"))
    # Weighted by alpha: transparent pixels are composited onto black, as in the grey image.
    return _channel_spread(rgba[..., :3], 255.0, weights=rgba[..., 3] / 255.0)


def _channel_spread(
    pixels: np.ndarray, full_scale: float, *, weights: np.ndarray | None = None
) -> float:
    # Channel by channel: numpy's reductions over a last axis of length 3 are ~20x slower.
    channels = [pixels[..., index] for index in range(pixels.shape[-1])]
    spread = functools.reduce(np.maximum, channels).astype(np.float32) - functools.reduce(
        np.minimum, channels
    )
    if weights is not None:
        spread = spread * weights
    return float(spread.mean() / full_scale)


def _raster_to_gray(image: Image.Image) -> np.ndarray:
    if image.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        return np.asarray(image, dtype=np.float32)
    if image.mode in {"P", "PA"}:
        image = image.convert("RGBA")
    if image.mode in {"RGBA", "LA"}:
        # Composite on black: transparent margins read as air, not as bone.
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.asarray(image.convert("L"))  # uint8: normalize_intensity looks the values up


def _decode_dicom(source: bytes | Dataset, max_pixels: int) -> _Raw:
    try:
        return _read_dicom(_parse_dicom(source), max_pixels)
    except ImageError:
        raise
    except Exception as exc:  # pydicom parses elements lazily: corrupt headers fail anywhere
        raise UnreadableImage("The DICOM file is malformed or truncated.") from exc


def _parse_dicom(source: bytes | Dataset) -> Dataset:
    import pydicom

    return pydicom.dcmread(io.BytesIO(source)) if isinstance(source, bytes) else source


def _legacy_dicom(data: bytes) -> Dataset | None:
    """The dataset of a DICOM file written without the Part 10 preamble, else None."""
    ds = _legacy_dicom_header(data, with_pixels=True)
    if ds is None or "PixelData" not in ds:
        return None
    _assume_transfer_syntax(ds)
    return ds


def _legacy_dicom_header(
    source: bytes | SeekableFile, *, with_pixels: bool = False
) -> Dataset | None:
    """The dataset (pixel data only if asked) of bytes, or a seekable file read from its
    start, that parse as DICOM without the Part 10 preamble and declare an image size,
    else None."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    handle.seek(0)
    if handle.read(2) not in _LEGACY_DICOM_STARTS:
        return None
    import pydicom

    try:
        handle.seek(0)
        ds = pydicom.dcmread(cast(BinaryIO, handle), force=True, stop_before_pixels=not with_pixels)
        is_image = int(ds.Rows) > 0 and int(ds.Columns) > 0
    except Exception:  # not DICOM after all: the raster decoder then says so as usual
        return None
    return ds if is_image else None


def _assume_transfer_syntax(ds: Dataset) -> None:
    # pydicom decodes pixels only with a transfer syntax; without file meta it can only be
    # the encoding the dataset was parsed in (little endian, as the first tag showed).
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if "TransferSyntaxUID" not in ds.file_meta:
        implicit = ds.original_encoding[0] is not False
        syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        ds.file_meta.TransferSyntaxUID = syntax


def _read_dicom(ds: Dataset, max_pixels: int) -> _Raw:
    _check_dicom_geometry(ds, max_pixels)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    pixels = _pixel_array(ds)
    header = read_header(ds)
    if photometric not in _MONOCHROME:
        grey = _colour_dicom_to_gray(pixels, photometric)
        full_scale = 2.0 ** int(getattr(ds, "BitsStored", 8) or 8) - 1
        step = max(1, max(pixels.shape[:2]) // _COLOUR_SAMPLE_SIDE)
        return _Raw(grey, header, _channel_spread(pixels[::step, ::step], full_scale))
    grey, notes = _monochrome_to_gray(pixels, ds, photometric)
    return _Raw(grey, header, 0.0, notes)


def _check_dicom_geometry(ds: Dataset, max_pixels: int) -> None:
    if "PixelData" not in ds:
        raise UnsupportedImage("The DICOM file has no pixel data (is it an image?).")
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    rows, columns = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    if rows == 0 or columns == 0:
        raise UnreadableImage("The DICOM file does not say how large its image is.")
    _check_pixel_count(columns, rows, frames, max_pixels)
    if frames > 1:
        raise UnsupportedImage("Multi-frame DICOM is not accepted; send a single radiograph.")


def _pixel_array(ds: Dataset) -> np.ndarray:
    reduced = _j2k_reduced(ds)
    if reduced is not None:
        return reduced
    try:
        return ds.pixel_array
    except BaseException as exc:  # pydicom raises many types for bad or undecodable pixel data
        # pylibjpeg-rle (Rust) panics on a corrupt RLE frame: pyo3's PanicException derives
        # from BaseException. Anything else that is not an Exception (Ctrl-C) goes on up.
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise
        raise UnreadableImage(
            "The DICOM pixel data cannot be decoded (truncated, or an unsupported compression)."
        ) from exc


def _j2k_levels(long_side: int) -> int:
    """How many halvings of a JPEG 2000 image still leave its long side at least
    DECODE_LONG_SIDE pixels (0: decode at full resolution)."""
    levels = 0
    while long_side >> (levels + 1) >= DECODE_LONG_SIDE:
        levels += 1
    return levels


def _j2k_reduced(ds: Dataset) -> np.ndarray | None:
    """A large grayscale JPEG 2000 radiograph at a lower resolution level of its own
    wavelet pyramid: a fraction of the full decode (1,955 px lossless: 1.05 s -> 0.36 s),
    and still larger than the preview and four times the model's input. None where this
    does not apply (other syntaxes, colour, signed or deep pixels, a codestream with fewer
    levels): pydicom then decodes at full resolution."""
    from pydicom.encaps import get_frame

    syntax = ds.file_meta.get("TransferSyntaxUID")
    levels = _j2k_levels(max(int(ds.Rows), int(ds.Columns)))
    simple = (
        int(getattr(ds, "SamplesPerPixel", 1) or 1) == 1
        and int(getattr(ds, "PixelRepresentation", 0) or 0) == 0
        and int(getattr(ds, "BitsAllocated", 16) or 16) <= 16
    )
    if syntax not in _J2K_SYNTAXES or not levels or not simple:
        return None
    try:
        frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    except Exception:  # odd encapsulation: let pydicom try
        return None
    precision = _j2k_precision(frame)
    if precision is None:
        return None
    for level in range(levels, 0, -1):
        try:
            with Image.open(io.BytesIO(frame), formats=["JPEG2000"]) as picture:
                picture.reduce = level  # type: ignore[method-assign,assignment]
                picture.load()
                pixels = np.asarray(picture)
        except (OSError, SyntaxError, ValueError):  # fewer levels in this codestream
            continue
        if pixels.ndim == 2 and pixels.shape[0] == -(-int(ds.Rows) >> level):
            # Pillow scales samples up to fill its 8- or 16-bit mode; pydicom does not.
            return pixels >> (pixels.dtype.itemsize * 8 - precision)
    return None


def _j2k_precision(frame: bytes) -> int | None:
    """Bits per sample of a raw, unsigned, one-component JPEG 2000 codestream (its SIZ
    marker segment), else None."""
    if frame[:4] != b"\xff\x4f\xff\x51" or len(frame) < 43:
        return None
    components = int.from_bytes(frame[40:42], "big")
    ssiz = frame[42]
    precision = (ssiz & 0x7F) + 1
    if components != 1 or ssiz & 0x80 or precision > 16:
        return None
    return precision


def _monochrome_to_gray(
    pixels: np.ndarray, ds: Dataset, photometric: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    windowed, notes = _apply_voi(_apply_modality_lut(pixels, ds), ds)
    grey = windowed.astype(np.float32)
    if _stored_inverted(ds, photometric):
        grey = grey.max() + grey.min() - grey
    return grey, notes


def _stored_inverted(ds: Dataset, photometric: str) -> bool:
    """Whether low stored values are dense (bone), so the image must be flipped.

    MONOCHROME1 says so, and so does Presentation LUT Shape INVERSE. For DX (PS3.3
    C.8.11.6) the two come together and describe the same inversion: flip once, not twice.
    """
    shape = element_text(ds, "PresentationLUTShape").upper()
    return photometric == "MONOCHROME1" or shape == "INVERSE"


def _apply_modality_lut(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_modality_lut

    depth = _modality_lut_depth(ds)
    if depth is None or not 8 < depth < 16:
        return apply_modality_lut(pixels, ds)
    # pydicom 3.0 asks numpy for a "uint12" dtype and fails on 9-15 bit LUT entries; a copy
    # of the LUT declaring 16-bit entries holds the same values.
    lut = copy.deepcopy(ds.ModalityLUTSequence[0])
    lut.LUTDescriptor = [*list(lut.LUTDescriptor)[:2], 16]
    widened = Dataset()
    widened.file_meta = ds.file_meta  # the LUT data's byte order, if it is stored as OW
    widened.ModalityLUTSequence = [lut]
    return apply_modality_lut(pixels, widened)


def _modality_lut_depth(ds: Dataset) -> int | None:
    sequence = ds.get("ModalityLUTSequence")
    return int(sequence[0].LUTDescriptor[2]) if sequence else None


def _apply_voi(values: np.ndarray, ds: Dataset) -> tuple[np.ndarray, tuple[str, ...]]:
    """The VOI LUT or window, unless it does not fit the data (then the data unwindowed)."""
    from pydicom.pixels import apply_voi_lut

    try:
        windowed = apply_voi_lut(values, ds)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, NotImplementedError):
        # A zero window width, an unknown VOI function, a LUT of unsupported depth: the
        # pixels are fine, only the suggested display is not.
        return values, (WINDOW_FALLBACK_WARNING,)
    if windowed is values or not _window_misfits(windowed, values):
        return windowed, ()
    return values, (WINDOW_FALLBACK_WARNING,)


def _window_misfits(windowed: np.ndarray, unwindowed: np.ndarray) -> bool:
    """Whether the window, not the data, crushed nearly all pixels to one end."""
    step = _sample_step(windowed.size)
    after, before = windowed[::step, ::step], unwindowed[::step, ::step]
    return (
        _end_fraction(after) > _MAX_CLIPPED_FRACTION
        and _end_fraction(before) <= _MAX_CLIPPED_FRACTION
    )


def _end_fraction(values: np.ndarray) -> float:
    """The fraction of values equal to the minimum or, if more, to the maximum."""
    return float(max(np.mean(values == values.min()), np.mean(values == values.max())))


def _colour_dicom_to_gray(pixels: np.ndarray, photometric: str) -> np.ndarray:
    """Accept colour-coded DICOM only when it is really grey (equal RGB channels)."""
    # pydicom's pixel_array has already converted YBR (JPEG, JPEG 2000) data to RGB.
    if photometric in _RGB_DECODED and pixels.ndim == 3 and pixels.shape[-1] == 3:
        channels = pixels.astype(np.float32)
        if np.abs(channels - channels.mean(axis=-1, keepdims=True)).max() <= 2.0:
            return channels.mean(axis=-1)
    raise UnsupportedImage(
        f"Colour DICOM ({photometric}) is not accepted; send the grayscale radiograph."
    )


def preview_png(image: np.ndarray, *, max_side: int = 1024) -> bytes:
    """An 8-bit grayscale PNG of a decoded image (lossless: dataset thumbnails and the
    copies that become training data)."""
    buffer = io.BytesIO()
    _preview_picture(image, max_side).save(buffer, format="PNG")
    return buffer.getvalue()


def preview_jpeg(image: np.ndarray, *, max_side: int = 1024) -> tuple[bytes, tuple[int, int]]:
    """The browser's preview of an analysed image, and its (width, height): an 8-bit
    grayscale JPEG at quality PREVIEW_JPEG_QUALITY. On a 1,955 x 1,841 radiograph shown at
    1,024 px it takes ~4 ms and 190 kB, against ~50 ms and 465 kB for the fastest PNG level
    and ~500 ms for the optimised PNG it replaces (scripts/encoding_benchmark.py,
    docs/benchmarks.md). The preview is for orientation; the diagnostic viewer reads the
    original at its full bit depth."""
    picture = _preview_picture(image, max_side)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=PREVIEW_JPEG_QUALITY)
    return buffer.getvalue(), picture.size


def _preview_picture(image: np.ndarray, max_side: int) -> Image.Image:
    picture = Image.fromarray(to_uint8(image), mode="L")
    # reducing_gap: a fast box reduction by whole factors first, Lanczos over what is left
    # (a 2,400-px radiograph to 1,024: 17 ms instead of 38).
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=1.0)
    return picture
