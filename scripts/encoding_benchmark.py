#!/usr/bin/env python
"""Preview and heatmap encodings, timed on one real radiograph (pydicom-data's RG1_UNCI.dcm,
1,955 x 1,841): why the worker stores a JPEG preview and an indexed-PNG heatmap. Prints a
markdown table of median milliseconds (of 7) and sizes.

    .venv/bin/python scripts/encoding_benchmark.py
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.data import get_testdata_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml.overlay import HEATMAP_LONG_SIDE, _heat_palette, _resize, heatmap_png  # noqa: E402
from ml.preprocessing import _preview_picture, decode  # noqa: E402


def _timed(make) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(7):
        started = time.perf_counter()
        size = len(make())
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), size


def _saved(picture: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, **options)
    return buffer.getvalue()


def main() -> None:
    path = get_testdata_file("RG1_UNCI.dcm")
    if path is None:
        raise SystemExit("pydicom-data's RG1_UNCI.dcm is missing")
    image = decode(Path(path).read_bytes()).image
    preview = _preview_picture(image, 1024)
    width, height = preview.size
    heat = np.clip(np.outer(np.hanning(224), np.hanning(224)), 0, 1).astype(np.float32)
    big = np.round(np.clip(_resize(heat, (width, height)), 0, 1) * 255).astype(np.uint8)
    rgba = Image.fromarray(_heat_palette()[big], mode="RGBA")
    rows = [
        (
            f"preview {width}x{height}: PNG optimize=True",
            lambda: _saved(preview, format="PNG", optimize=True),
        ),
        ("preview: PNG level 1", lambda: _saved(preview, format="PNG", compress_level=1)),
        ("preview: PNG level 0", lambda: _saved(preview, format="PNG", compress_level=0)),
        (
            "preview: WebP lossless, method 0",
            lambda: _saved(preview, format="WEBP", lossless=True, method=0),
        ),
        ("preview: JPEG quality 95 (stored)", lambda: _saved(preview, format="JPEG", quality=95)),
        (
            f"heatmap {width}x{height}: RGBA PNG level 6 (before)",
            lambda: _saved(rgba, format="PNG"),
        ),
        (
            f"heatmap {HEATMAP_LONG_SIDE} px: indexed PNG with alpha (stored)",
            lambda: heatmap_png(
                heat, size=(round(width * HEATMAP_LONG_SIDE / height), HEATMAP_LONG_SIDE)
            ),
        ),
    ]
    print("| encoding | ms | kB |\n|---|---|---|")
    for name, make in rows:
        ms, size = _timed(make)
        print(f"| {name} | {ms:.1f} | {size / 1024:.0f} |")


if __name__ == "__main__":
    main()
