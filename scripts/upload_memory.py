"""Web-tier memory for concurrent full-size uploads: what checking four 49-megapixel JPEGs
at once costs the process that receives them, with today's header check
(`diagnosis.services.image_validate`) beside the full decode and preview the web process
did before (`ml.preprocessing.decode_image` + `preview_png`). Each runs in a fresh
interpreter; the figure is its peak resident memory (VmHWM) minus its resident memory
before the uploads. Prints JSON; the figures go to docs/benchmarks.md."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIDE = 7000  # 49 megapixels, under the 50-megapixel limit
CONCURRENT = 4


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _jpeg() -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    small = (rng.random((70, 70)) * 255).astype(np.uint8)
    picture = Image.fromarray(small, mode="L").resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def _measure(mode: str) -> dict:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chestnet_site.settings")
    import django

    django.setup()
    from diagnosis import services
    from ml.preprocessing import decode_image, preview_png

    data = _jpeg()

    def header_check() -> None:
        services.image_validate(name="big.jpeg", data=data)

    def full_decode() -> None:
        preview_png(decode_image(data))

    work = header_check if mode == "header" else full_decode
    before = _status_kb("VmRSS")
    threads = [threading.Thread(target=work) for _ in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    peak = _status_kb("VmHWM")
    return {"mode": mode, "file_kb": len(data) // 1024, "rise_mb": round((peak - before) / 1024)}


def main() -> None:
    if len(sys.argv) > 1:
        print(json.dumps(_measure(sys.argv[1])))
        return
    results = []
    for mode in ("header", "decode"):
        out = subprocess.run(
            [sys.executable, __file__, mode], capture_output=True, text=True, check=True
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        json.dumps(
            {"concurrent_uploads": CONCURRENT, "megapixels": SIDE * SIDE / 1e6, "results": results},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
