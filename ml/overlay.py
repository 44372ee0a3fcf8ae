"""Drawing a Grad-CAM map over a radiograph: plain arrays in, PNG bytes out.

No TensorFlow here, so rendering costs a worker (or the web process) nothing to import.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

MAX_OVERLAY_ALPHA = 210
# The stored heatmap's long side. Grad-CAM has the resolution of the network's last
# convolution (a few dozen cells); viewers stretch the layer over the image's extent, so a
# larger file would only add interpolated pixels: 256 px encodes in ~2 ms, the 1,024-px RGBA
# layer it replaces took ~115 ms (scripts/encoding_benchmark.py).
HEATMAP_LONG_SIDE = 256


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """Heat in [0, 1] to RGB uint8 with matplotlib's 'jet' (blue cold, red hot)."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.clip(heatmap, 0.0, 1.0))[..., :3] * 255).astype(np.uint8)


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D float array to (width, height)."""
    if array.shape[::-1] == size:
        return array
    picture = Image.fromarray(array.astype(np.float32), mode="F")
    return np.asarray(picture.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def heatmap_size(image_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of the stored heatmap for an image of `image_size`: the image's
    aspect ratio, the long side at most HEATMAP_LONG_SIDE."""
    width, height = image_size
    scale = min(1.0, HEATMAP_LONG_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def heatmap_png(heatmap: np.ndarray, *, size: tuple[int, int]) -> bytes:
    """A PNG of (width, height) `size` to lay over the image: colour and opacity rise with
    heat, so cold regions leave the radiograph readable. Toggle and fade it in CSS. An
    indexed PNG (256 heat levels, their opacity in its tRNS chunk): browsers and Pillow read
    it as RGBA; it encodes in about a tenth of the time of the same picture as RGBA."""
    heat = np.clip(_resize(heatmap, size), 0.0, 1.0)
    levels = np.round(heat * 255.0).astype(np.uint8)
    picture = Image.fromarray(levels, mode="P")
    picture.putpalette(_heat_palette().tobytes(), rawmode="RGBA")
    return _png(picture, compress_level=1)


def _heat_palette() -> np.ndarray:
    """RGBA for each of 256 heat levels: 'jet', and an opacity that rises with heat."""
    global _PALETTE
    if _PALETTE is None:
        heat = np.linspace(0.0, 1.0, 256)
        # The coolest fifth stays fully transparent and even the hottest spot lets the
        # radiograph show through; the viewer's opacity slider scales this further.
        alpha = np.clip((heat - 0.2) / 0.8, 0.0, 1.0) * MAX_OVERLAY_ALPHA
        _PALETTE = np.column_stack([colorize(heat), np.round(alpha).astype(np.uint8)])
    return _PALETTE


_PALETTE: np.ndarray | None = None


def render_overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.4) -> bytes:
    """The heatmap blended over the grayscale image (2-D [0, 1]) at the image's size."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}.")
    height, width = image.shape
    heat = np.clip(_resize(heatmap, (width, height)), 0.0, 1.0)
    gray = np.repeat(np.clip(image, 0.0, 1.0)[..., np.newaxis] * 255.0, 3, axis=-1)
    weight = alpha * heat[..., np.newaxis]
    blended = gray * (1.0 - weight) + colorize(heat) * weight
    return _png(Image.fromarray(np.round(blended).astype(np.uint8), mode="RGB"))


def _png(picture: Image.Image, *, compress_level: int = 6) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def composite_rgb(preview: bytes, heatmap: bytes) -> np.ndarray:
    """The stored preview PNG with the stored heatmap PNG (RGBA, same size) laid over it,
    as an RGB uint8 array: the picture a viewer shows at full opacity."""
    with Image.open(io.BytesIO(preview)) as base, Image.open(io.BytesIO(heatmap)) as heat:
        layer = heat.convert("RGBA")
        if layer.size != base.size:
            layer = layer.resize(base.size, Image.Resampling.BILINEAR)
        blended = Image.alpha_composite(base.convert("RGBA"), layer)
    return np.asarray(blended.convert("RGB"), dtype=np.uint8)
