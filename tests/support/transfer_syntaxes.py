"""One small radiograph per transfer syntax the DICOM listener accepts
(dicomnet.sop.TRANSFER_SYNTAXES), across photometric interpretations (MONOCHROME1 and 2),
bit depths (8 to 16, signed and unsigned) and modality transforms (Rescale Slope/Intercept,
a Modality LUT Sequence), plus a legacy file without file meta, a 16-bit DX whose stored
window misses its values and a file only the server can decode. All are the same synthetic
chest-like picture, built at test time: pydicom's encoders (JPEG 2000, JPEG-LS, RLE, deflate),
dcmtk's `dcmcjpeg` for the JPEG processes pydicom cannot write, and by hand the rest."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, get_frame
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from devtools import dicom_files

ROWS, COLUMNS = 320, 272  # not square: a transposed image would not correlate
DCMCJPEG = shutil.which("dcmcjpeg")
_DCMCJPEG_SWITCHES = {
    JPEGBaseline8Bit: ["+eb", "+q", "95"],
    JPEGExtended12Bit: ["+ee", "+q", "95"],
    JPEGLossless: ["+el", "+sv", "6"],
    JPEGLosslessSV1: ["+e1"],
}
MISFIT_WINDOW = (2000, 400)  # (centre, width): below every value of the 16-bit DX


def chest_picture(rows: int = ROWS, columns: int = COLUMNS) -> np.ndarray:
    """A radiograph-like picture in [0, 1], white = dense: a body with two dark lungs,
    ribs, a bright mediastinum and a bright side marker in one corner (so that a flipped,
    inverted or transposed image does not correlate with it)."""
    y, x = np.mgrid[0:rows, 0:columns]
    u, v = x / columns, y / rows
    body = np.exp(-(((u - 0.5) / 0.45) ** 8) - (((v - 0.55) / 0.5) ** 8))
    lungs = sum(np.exp(-(((u - cx) / 0.15) ** 2) - (((v - 0.5) / 0.3) ** 2)) for cx in (0.3, 0.7))
    ribs = 0.12 * (np.sin(v * 60 + 6 * np.abs(u - 0.5)) > 0.6) * lungs
    mediastinum = 0.35 * np.exp(-(((u - 0.52) / 0.08) ** 2) - (((v - 0.65) / 0.35) ** 4))
    picture = 0.15 + 0.55 * body - 0.45 * lungs + ribs + mediastinum
    picture[16:48, 16:40] = 1.0
    noise = np.random.default_rng(19).normal(0, 0.01, size=picture.shape)
    return np.clip(picture + noise, 0.0, 1.0)


@dataclass(frozen=True)
class Sample:
    """One file: `name` (the test id), its bytes, its transfer syntax ("" without file
    meta), whether the viewer should open it with a window derived from its pixels (its own
    does not fit) and whether a browser can decode it at all."""

    name: str
    data: bytes
    syntax: str
    derived_window: bool = False
    browser_decodable: bool = True


# --- datasets --------------------------------------------------------------------------


def _dataset(
    stored: np.ndarray,
    *,
    bits_allocated: int = 16,
    bits_stored: int = 12,
    signed: bool = False,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
    modality: str = "DX",
) -> Dataset:
    """A radiograph of these stored values, explicit VR little endian."""
    sop = dicom_files.CR if modality == "CR" else dicom_files.DX_FOR_PRESENTATION
    ds = dicom_files.radiograph(pixels=np.zeros((2, 2), np.uint16), sop_class=sop)
    ds.Modality = modality
    ds.Rows, ds.Columns = stored.shape
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    dtype = {(8, False): np.uint8, (16, False): np.uint16, (16, True): np.int16}
    ds.PixelData = stored.astype(dtype[bits_allocated, signed]).tobytes()
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    return ds


def _scaled(picture: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.round(low + picture * (high - low))


def _fitting_window(values: np.ndarray) -> tuple[float, float]:
    low, high = float(values.min()), float(values.max())
    return round((low + high) / 2), round(high - low)


def _mono2_12bit(picture: np.ndarray, *, bits_stored: int = 12) -> Dataset:
    stored = _scaled(picture, 100, 3900)
    return _dataset(stored, bits_stored=bits_stored, window=_fitting_window(stored))


def _mono1_12bit(picture: np.ndarray) -> Dataset:
    """MONOCHROME1: dense (white) is the lowest stored value."""
    stored = _scaled(1 - picture, 200, 4000)
    return _dataset(stored, photometric="MONOCHROME1", window=_fitting_window(stored))


def _cr_plate(picture: np.ndarray) -> Dataset:
    """A CR as some plate readers write it (pydicom-data's RG1 files): MONOCHROME1, 15 bits
    stored, window 15000/30000 and a Pixel Spacing of zero."""
    stored = _scaled(1 - picture, 800, 26500)
    ds = _dataset(
        stored, bits_stored=15, photometric="MONOCHROME1", window=(15000, 30000), modality="CR"
    )
    ds.PixelSpacing = ["0.000", "0.000"]
    return ds


def _mono2_8bit(picture: np.ndarray) -> Dataset:
    stored = _scaled(picture, 10, 245)
    return _dataset(stored, bits_allocated=8, bits_stored=8, window=_fitting_window(stored))


def _signed(picture: np.ndarray) -> Dataset:
    stored = _scaled(picture, -1900, 1900)
    return _dataset(stored, signed=True, window=_fitting_window(stored))


def _rescaled(picture: np.ndarray) -> Dataset:
    """Rescale Slope/Intercept: the window is in the rescaled units."""
    stored = _scaled(picture, 100, 3900)
    ds = _dataset(stored, window=_fitting_window(stored * 0.5 - 1000))
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 0.5, -1000, "US"
    return ds


def _modality_lut(picture: np.ndarray) -> Dataset:
    """A Modality LUT Sequence (a square-root curve onto 16 bits): the window is in the
    LUT's output units, and misses the stored values."""
    stored = _scaled(picture, 100, 3900)
    lut = np.round(np.sqrt(np.arange(4096) / 4095) * 60000).astype(np.uint16)
    ds = _dataset(stored, window=_fitting_window(lut[stored.astype(int)]))
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "US"
    item.LUTData = lut.tobytes()
    ds.ModalityLUTSequence = [item]
    return ds


def _misfit_window_16bit(picture: np.ndarray) -> Dataset:
    """A 16-bit DX whose stored window (made for another detector) lies below all its
    values: drawn with it, the image is solid white."""
    return _dataset(_scaled(picture, 21000, 61000), bits_stored=16, window=MISFIT_WINDOW)


def _signed_in_unsigned_codestream(picture: np.ndarray) -> Dataset:
    """Signed pixels whose JPEG 2000 codestream says unsigned (some encoders write the
    two's complement bit patterns as they are): a decoder that trusts the codestream reads
    -1 as 4095."""
    signed = _signed(picture)
    values = np.frombuffer(signed.PixelData, dtype=np.int16)
    patterns = (values.astype(np.int32) & 0xFFF).astype(np.uint16)
    ds = _dataset(patterns.reshape(signed.Rows, signed.Columns))
    ds.compress(JPEG2000Lossless)
    ds.PixelRepresentation = 1
    ds.WindowCenter, ds.WindowWidth = signed.WindowCenter, signed.WindowWidth
    return ds


# --- encodings -------------------------------------------------------------------------


def _compressed(ds: Dataset, syntax: UID, **options) -> bytes:
    ds.compress(syntax, **options)
    return dicom_files.to_bytes(ds)


def _dcmcjpeg(ds: Dataset, syntax: UID) -> bytes:
    """The file as dcmtk's dcmcjpeg encodes it in this JPEG process."""
    if DCMCJPEG is None:
        raise FileNotFoundError("dcmcjpeg (dcmtk, `make dicom-tools`) is not installed")
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.dcm", Path(folder) / "out.dcm"
        dicom_files.write(ds, source)
        command = [DCMCJPEG, *_DCMCJPEG_SWITCHES[syntax], str(source), str(target)]
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        return target.read_bytes()


def _written(ds: Dataset, syntax: UID) -> bytes:
    """Native pixel data in an uncompressed transfer syntax (pydicom deflates the dataset
    for the deflated one; big endian needs the 16-bit words swapped first)."""
    if syntax == ExplicitVRBigEndian and ds.BitsAllocated > 8:
        kind = "i" if ds.PixelRepresentation else "u"
        words = np.frombuffer(ds.PixelData, dtype=f"<{kind}2")
        ds.PixelData = words.astype(f">{kind}2").tobytes()
    ds.file_meta.TransferSyntaxUID = syntax
    return dicom_files.to_bytes(ds)


def _legacy(ds: Dataset) -> bytes:
    """What an old modality writes: the implicit VR little endian dataset alone, without
    preamble or file meta."""
    part10 = _written(ds, ImplicitVRLittleEndian)
    group_length = int.from_bytes(part10[140:144], "little")  # (0002,0000), the first element
    return part10[144 + group_length :]


def _cut_short(data: bytes) -> bytes:
    """The file with its one compressed frame cut to nine tenths: pydicom's CharLS (the
    server) decodes what is there, the browser's refuses the stream."""
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    ds.PixelData = encapsulate([frame[: len(frame) * 9 // 10]])
    return dicom_files.to_bytes(ds)


Build = Callable[[np.ndarray], bytes]


@dataclass(frozen=True)
class _Recipe:
    syntax: UID | str
    build: Build
    derived_window: bool = False
    browser_decodable: bool = True


MakeDataset = Callable[[np.ndarray], Dataset]


def _native(syntax: UID, dataset: MakeDataset, **flags: bool) -> _Recipe:
    """The picture's dataset written uncompressed in `syntax`."""
    return _Recipe(syntax, lambda p: _written(dataset(p), syntax), **flags)


def _by_dcmcjpeg(syntax: UID, dataset: MakeDataset) -> _Recipe:
    """The picture's dataset compressed by dcmtk's dcmcjpeg."""
    return _Recipe(syntax, lambda p: _dcmcjpeg(dataset(p), syntax))


def _by_pydicom(syntax: UID, dataset: MakeDataset, **options: Any) -> _Recipe:
    """The picture's dataset compressed by pydicom (its `options` as Dataset.compress's)."""
    return _Recipe(syntax, lambda p: _compressed(dataset(p), syntax, **options))


def _mono2_16bit(picture: np.ndarray) -> Dataset:
    """As `_mono2_12bit`, with all 16 bits stored."""
    return _mono2_12bit(picture, bits_stored=16)


RECIPES: dict[str, _Recipe] = {
    "explicit-le-mono2": _native(ExplicitVRLittleEndian, _mono2_12bit),
    "implicit-le-mono1": _native(ImplicitVRLittleEndian, _mono1_12bit),
    "deflated-explicit-le": _native(DeflatedExplicitVRLittleEndian, _mono2_12bit),
    "explicit-be-signed": _native(ExplicitVRBigEndian, _signed),
    "explicit-le-8bit": _native(ExplicitVRLittleEndian, _mono2_8bit),
    "explicit-le-rescale": _native(ExplicitVRLittleEndian, _rescaled),
    "explicit-le-modality-lut": _native(ExplicitVRLittleEndian, _modality_lut),
    "explicit-le-16bit-window-misfit": _native(
        ExplicitVRLittleEndian, _misfit_window_16bit, derived_window=True
    ),
    "legacy-no-file-meta": _Recipe("", lambda p: _legacy(_mono2_12bit(p))),
    "jpeg-baseline-8bit": _by_dcmcjpeg(JPEGBaseline8Bit, _mono2_8bit),
    "jpeg-extended-12bit": _by_dcmcjpeg(JPEGExtended12Bit, _mono2_12bit),
    "jpeg-lossless": _by_dcmcjpeg(JPEGLossless, _mono2_12bit),
    "jpeg-lossless-sv1-mono1": _by_dcmcjpeg(JPEGLosslessSV1, _mono1_12bit),
    "jpeg-ls-lossless-signed": _by_pydicom(JPEGLSLossless, _signed),
    "jpeg-ls-near-lossless-cr": _by_pydicom(JPEGLSNearLossless, _cr_plate, jls_error=3),
    "j2k-lossless": _by_pydicom(JPEG2000Lossless, _mono2_12bit),
    "j2k-lossless-signed-unsigned-codestream": _Recipe(
        JPEG2000Lossless, lambda p: dicom_files.to_bytes(_signed_in_unsigned_codestream(p))
    ),
    "j2k-lossy-cr": _by_pydicom(JPEG2000, _cr_plate, j2k_cr=[15]),
    "rle-16bit": _by_pydicom(RLELossless, _mono2_16bit),
    "jpeg-ls-cut-short": _Recipe(
        JPEGLSLossless,
        lambda p: _cut_short(_compressed(_mono2_12bit(p), JPEGLSLossless)),
        browser_decodable=False,
    ),
}


def sample(name: str, picture: np.ndarray | None = None) -> Sample:
    recipe = RECIPES[name]
    data = recipe.build(chest_picture() if picture is None else picture)
    return Sample(name, data, str(recipe.syntax), recipe.derived_window, recipe.browser_decodable)


def needs_dcmtk(name: str) -> bool:
    return RECIPES[name].syntax in _DCMCJPEG_SWITCHES
