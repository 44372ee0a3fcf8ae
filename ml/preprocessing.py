"""File bytes to model input: the one path shared by training, evaluation and serving.

No TensorFlow here, so the web process can validate and preview uploads cheaply.
"""

from __future__ import annotations

import io
import warnings
from typing import Final

import numpy as np
from PIL import Image, UnidentifiedImageError

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
_RGB_DECODED: Final = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
_PERCENTILE_SAMPLE: Final = 250_000


class ImageError(ValueError):
    """Base class: these bytes cannot be turned into a chest radiograph."""


class UnreadableImage(ImageError):
    """Empty, truncated, corrupt or not an image at all."""


class UnsupportedImage(ImageError):
    """A valid file we will not interpret (multi-frame, colour DICOM, blank, tiny)."""


class ImageTooLarge(UnsupportedImage):
    """More pixels than any radiograph has: refused before decoding (decompression bomb)."""


def is_dicom(data: bytes) -> bool:
    return data[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM"


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode PNG, JPEG or DICOM bytes to a 2-D float32 array in [0, 1], white = dense."""
    if not data:
        raise UnreadableImage("The file is empty.")
    raw = _decode_dicom(data, max_pixels) if is_dicom(data) else _decode_raster(data, max_pixels)
    _check_shape(raw.shape)
    return normalize_intensity(raw)


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
    pixels = raw.astype(np.float32)
    # Percentiles of a regular subsample: the same figures to within a grey level, and
    # ~20x faster on a 4,000-pixel-wide detector image.
    step = max(1, int(np.sqrt(pixels.size / _PERCENTILE_SAMPLE)))
    low, high = np.percentile(pixels[::step, ::step], [LOW_PERCENTILE, HIGH_PERCENTILE])
    if high - low < 1e-6:
        low, high = float(pixels.min()), float(pixels.max())
    if high - low < 1e-6:
        raise UnsupportedImage("The image is blank (a single intensity everywhere).")
    # np.percentile's float64 scalars would promote the result; keep the promised float32.
    return np.clip((pixels - low) / (high - low), 0.0, 1.0).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A decoded [0, 1] image as 8-bit grayscale, for previews and overlays."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


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


def _decode_raster(data: bytes, max_pixels: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Pillow warns, then raises, on huge images; our own limit is checked first.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in {"PNG", "JPEG", "MPO"}:
                raise UnsupportedImage(
                    f"{image.format} images are not accepted; upload PNG, JPEG or DICOM."
                )
            _check_pixel_count(image.width, image.height, 1, max_pixels)
            if getattr(image, "n_frames", 1) > 1 and image.format == "PNG":
                raise UnsupportedImage("Animated PNGs are not accepted.")
            image.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(
            "The file is not a readable PNG, JPEG or DICOM image (it may be truncated or corrupt)."
        ) from exc
    return _raster_to_gray(image)


def _raster_to_gray(image: Image.Image) -> np.ndarray:
    if image.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        return np.asarray(image, dtype=np.float32)
    if image.mode in {"P", "PA"}:
        image = image.convert("RGBA")
    if image.mode in {"RGBA", "LA"}:
        # Composite on black: transparent margins read as air, not as bone.
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.asarray(image.convert("L"), dtype=np.float32)


def _decode_dicom(data: bytes, max_pixels: int) -> np.ndarray:
    try:
        return _read_dicom(data, max_pixels)
    except ImageError:
        raise
    except Exception as exc:  # pydicom parses elements lazily: corrupt headers fail anywhere
        raise UnreadableImage("The DICOM file is malformed or truncated.") from exc


def _read_dicom(data: bytes, max_pixels: int) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableImage("The DICOM file is malformed or truncated.") from exc
    if "PixelData" not in ds:
        raise UnsupportedImage("The DICOM file has no pixel data (is it an image?).")
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    rows, columns = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    if rows == 0 or columns == 0:
        raise UnreadableImage("The DICOM file does not say how large its image is.")
    _check_pixel_count(columns, rows, frames, max_pixels)
    if frames > 1:
        raise UnsupportedImage("Multi-frame DICOM is not accepted; send a single radiograph.")
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for bad or undecodable pixel data
        raise UnreadableImage(
            "The DICOM pixel data cannot be decoded (truncated, or an unsupported compression)."
        ) from exc
    if photometric not in {"MONOCHROME1", "MONOCHROME2"}:
        return _colour_dicom_to_gray(pixels, photometric)
    pixels = apply_voi_lut(apply_modality_lut(pixels, ds), ds).astype(np.float32)
    # MONOCHROME1 stores bone dark; flip so every image reads white = dense.
    return pixels.max() + pixels.min() - pixels if photometric == "MONOCHROME1" else pixels


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
    """An 8-bit grayscale PNG of a decoded image for browsers, which cannot show DICOM."""
    picture = Image.fromarray(to_uint8(image), mode="L")
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
