"""Build the offline corpus of inputs ChestNet must refuse, and score a model's gate on it.

    .venv/bin/python scripts/ood_corpus.py build build/ood-corpus
    .venv/bin/python scripts/ood_corpus.py score build/ood-corpus [--model M] [--json OUT]

Kinds (a folder each): real DICOM of other modalities and body parts from pydicom-data
(CT, MR, NM, US, a CR tibia), the same pixels saved as PNG/JPEG without a header,
photographs (matplotlib's sample data, colour and grey), synthesised documents, screenshots
and textures, and radiographs from the held-out validation batches rotated or inverted.
`chest_other_source` holds real chest radiographs that are not from the training source
(pydicom-data's adult CR chest): they must never be refused as `not_chest_radiograph`.
No file comes from the network; nothing here is used to fit the gate.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.reports import print_report  # noqa: E402
from ml.preprocessing import decode_image, to_uint8  # noqa: E402

DICOM_KINDS = {
    "ct_dicom": [
        "693_UNCR.dcm",
        "CT_small.dcm",
        "J2K_pixelrep_mismatch.dcm",
        "bad_sequence.dcm",
        "explicit_VR-UN.dcm",
    ],
    "mr_dicom": [
        "MR2_UNCR.dcm",
        "examples_overlay.dcm",
        "MR-SIEMENS-DICOM-WithOverlays.dcm",
        "MR_small.dcm",
    ],
    "nm_dicom": ["JPEG-LL.dcm", "JPEG2000_UNC.dcm"],
    "us_dicom": ["JPGLosslessP14SV1_1s_1f_8b.dcm", "US1_UNCR.dcm"],
    "cr_tibia_dicom": ["RG3_UNCR.dcm", "RG3_J2KR.dcm"],
}
CHEST_OTHER_SOURCE = ["RG1_UNCR.dcm", "RG1_J2KR.dcm"]


def build(root: Path, *, data_root: Path | None = None) -> None:
    """Write the corpus under `root`; its chests come from `data_root` (default: the full
    data set beside the repository)."""
    from pydicom.data import get_testdata_file

    warnings.simplefilter("ignore")
    rng = np.random.default_rng(7)
    for kind, names in DICOM_KINDS.items():
        for name in names:
            path = get_testdata_file(name)
            if path is None:
                continue
            data = Path(path).read_bytes()
            _write(root / kind / name, data)
            _export_pixels(root / f"{kind.removesuffix('_dicom')}_as_png", name, data)
    for name in CHEST_OTHER_SOURCE:
        path = get_testdata_file(name)
        if path is not None:
            data = Path(path).read_bytes()
            _write(root / "chest_other_source" / name, data)
            _write(root / "chest_other_source" / f"{name}.png", _png(decode_image(data)))
    _photographs(root / "photograph")
    for i in range(12):
        _write(root / "document" / f"document-{i}.png", _document(rng, i))
        _write(root / "screenshot" / f"screenshot-{i}.png", _screenshot(rng, i))
        _write(root / "texture" / f"texture-{i}.png", _texture(rng, i))
    _transformed_chests(root, rng, data_root)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(picture: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _export_pixels(folder: Path, name: str, data: bytes) -> None:
    try:
        image = decode_image(data)
    except ValueError:
        return
    _write(folder / f"{name}.png", _png(image))
    _write(folder / f"{name}.jpg", _jpeg(Image.fromarray(to_uint8(image), mode="L")))


def _photographs(folder: Path) -> None:
    import matplotlib

    samples = Path(matplotlib.get_data_path()) / "sample_data"
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
        source = samples / name
        if not source.exists():
            continue
        picture = Image.open(source).convert("RGB")
        _write(folder / f"{source.stem}-colour.jpg", _jpeg(picture))
        _write(folder / f"{source.stem}-grey.jpg", _jpeg(picture.convert("L")))
        crop = picture.crop((0, 0, picture.width // 2, picture.height // 2)).convert("L")
        _write(folder / f"{source.stem}-grey-crop.png", _jpeg(crop))


def _document(rng, i: int) -> bytes:
    page = Image.new("L", (850, 1100), 255 - int(rng.integers(0, 30)))
    draw = ImageDraw.Draw(page)
    y = 60
    while y < 1040:
        words = " ".join("lorem ipsum dolor sit amet"[: rng.integers(3, 26)] for _ in range(4))
        draw.text((60, y), words * int(rng.integers(1, 3)), fill=int(rng.integers(0, 60)))
        y += int(rng.integers(14, 30))
    if i % 3 == 0:
        draw.rectangle((500, 80, 800, 300), outline=0, width=3)
    return _jpeg(page) if i % 2 else _png(np.asarray(page, np.float32) / 255.0)


def _screenshot(rng, i: int) -> bytes:
    shot = Image.new("L", (1280, 800), int(rng.integers(200, 250)))
    draw = ImageDraw.Draw(shot)
    draw.rectangle((0, 0, 1280, 48), fill=int(rng.integers(30, 90)))
    draw.rectangle((0, 48, 240, 800), fill=int(rng.integers(150, 220)))
    for _ in range(int(rng.integers(6, 16))):
        x, y = int(rng.integers(260, 1100)), int(rng.integers(70, 700))
        draw.rectangle(
            (x, y, x + int(rng.integers(60, 300)), y + int(rng.integers(20, 120))),
            fill=int(rng.integers(0, 255)),
            outline=0,
        )
        draw.text((x + 5, y + 5), "Button", fill=0)
    if i % 4 == 0:  # a viewer showing a dark image panel
        draw.rectangle((300, 80, 900, 760), fill=int(rng.integers(0, 40)))
    return _png(np.asarray(shot, np.float32) / 255.0)


def _texture(rng, i: int) -> bytes:
    size = 512
    kind = i % 4
    if kind == 0:
        pixels = rng.random((size, size))
    elif kind == 1:
        y, x = np.mgrid[0:size, 0:size] / size
        pixels = (np.sin(x * rng.uniform(5, 30)) + np.cos(y * rng.uniform(5, 30))) / 4 + 0.5
    elif kind == 2:
        pixels = (np.add.outer(np.arange(size), np.arange(size)) // int(rng.integers(16, 64))) % 2
        pixels = pixels.astype(float)
    else:
        noise = Image.fromarray((rng.random((size, size)) * 255).astype(np.uint8))
        pixels = np.asarray(noise.filter(ImageFilter.GaussianBlur(12)), float) / 255.0
    return _png(pixels.astype(np.float32))


def _transformed_chests(root: Path, rng, data_root: Path | None) -> None:
    """Radiographs from the held-out validation batches (never fitted on), turned into what
    a chest radiograph never looks like: on its side, upside down, negative."""
    from ml.config import DEFAULT_DATA, TrainConfig
    from ml.train import split_for

    data_root = data_root or DEFAULT_DATA
    records = split_for(TrainConfig(data_root=str(data_root))).validation
    picks = [records[i] for i in rng.choice(len(records), size=16, replace=False)]
    for n, record in enumerate(picks):
        image = decode_image((data_root / record.path).read_bytes())
        stem = Path(record.path).stem
        if n % 2 == 0:
            _write(root / "chest_rotated" / f"{stem}-rot90.png", _png(np.rot90(image)))
            _write(root / "chest_rotated" / f"{stem}-rot180.png", _png(np.rot90(image, 2)))
        else:
            _write(root / "chest_rotated" / f"{stem}-rot270.png", _png(np.rot90(image, 3)))
        _write(root / "chest_inverted" / f"{stem}-inverted.png", _png(1.0 - image))


def score(root: Path, model: str | None) -> dict:
    from ml.predictor import Predictor

    predictor = Predictor.load(model)
    report: dict = {"model_version": predictor.version, "kinds": {}}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.is_file())
        outcomes = [predictor.predict(p.read_bytes(), heatmap=False) for p in files]
        reasons = Counter(o.reason if o.refused else "analysed" for o in outcomes)
        report["kinds"][folder.name] = {
            "files": len(files),
            "refused": sum(o.refused for o in outcomes),
            "refused_rate": round(sum(o.refused for o in outcomes) / max(len(files), 1), 3),
            "outcomes": dict(reasons),
            "analysed": {
                p.name: round(o.probability, 3)
                for p, o in zip(files, outcomes, strict=True)
                if not o.refused
            },
        }
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("build", "score"))
    parser.add_argument("root")
    parser.add_argument("--model")
    parser.add_argument("--json", help="write the score report here")
    args = parser.parse_args()
    root = Path(args.root)
    if args.action == "build":
        build(root)
        counts = {p.name: len(list(p.iterdir())) for p in sorted(root.iterdir()) if p.is_dir()}
        print(json.dumps(counts, indent=2))
        return 0
    report = score(root, args.model)
    print_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
