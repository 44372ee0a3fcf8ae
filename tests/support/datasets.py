"""Zips and datasets built in memory for the mlops tests; imported by tests only."""

from __future__ import annotations

import io
import stat
import zipfile

from tests.support.images import png_bytes


def zip_bytes(entries: dict[str, bytes], *, symlinks: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            if name in symlinks:
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                archive.writestr(info, data)
            else:
                archive.writestr(name, data)
    return buffer.getvalue()


def labelled_entries(
    normal: int, pneumonia: int, *, prefix: str = "", seed: int = 0
) -> dict[str, bytes]:
    """Distinct radiograph-like PNGs under NORMAL/ and PNEUMONIA/; one patient per image.
    PNEUMONIA images are brighter, so even a tiny network can learn something."""
    entries = {}
    for i in range(normal):
        entries[f"{prefix}NORMAL/IM-{seed + i:04d}-0001.png"] = png_bytes(
            72, 72, seed=seed * 1000 + i
        )
    for i in range(pneumonia):
        entries[f"{prefix}PNEUMONIA/person{seed + i}_bacteria_1.png"] = _bright_png(
            seed * 1000 + 500 + i
        )
    return entries


def _bright_png(seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = (128 + rng.random((72, 72)) * 127).astype(np.uint8)
    pixels[20:50, 20:50] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def start_training_worker(*, log, env: dict[str, str], queues: str = "training"):
    """A worker like `make run`'s training worker (one child, a fresh child per task);
    returns once it consumes. Stop it with devtools.workers.stop_worker."""
    from devtools.workers import start_worker

    return start_worker(log=log, env=env, queues=queues, max_tasks_per_child=1)


TINY_RUN = {"epochs": 1, "arch": "resnet", "image_size": 64, "width": 16, "stages": 2, "seed": 3}
