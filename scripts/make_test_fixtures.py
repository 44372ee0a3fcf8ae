"""Build tests/data/radiographs, the small licensed subset of the public chest X-ray data set
that the test suite runs on, from the full copy (../shared/data or CHESTNET_SHARED_DATA).

    .venv/bin/python scripts/make_test_fixtures.py [--source DIR] [--out DIR]

The choice is deterministic (no randomness, no dates), so running this again on the same
data writes the same files. What is chosen, and why:

- ORIGINALS: the full-size originals the tests name (a reference, the two RGB-coded ones,
  the widest, one taller than wide) and a few of the smallest, to keep the set small;
- the 224 px training copy of each of them (a test compares every original with its copy);
- every training image of MANY_IMAGES, one patient with many images (a split must keep
  them together);
- the ENDS lowest and highest numbered training images of every file-name family (IM,
  NORMAL2-IM, person..._bacteria, person..._virus): the held-out acquisition batches of a
  batch split of this subset are then among the shipped model's (checked here), so the
  shipped model can be tested on images it never trained on;
- evenly spaced images of the rest of the training split, up to PER_CLASS of each label
  (about the data set's 1 : 2.9 balance).

Files are copied byte for byte; MANIFEST.csv keeps the source's rows (path, label, patient,
sha256) and their order. The README.md beside them (attribution, licence) is kept as is.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml.artifact import DEFAULT_ARTIFACT, read_card  # noqa: E402
from ml.data import LABELS, Record, acquisition_batch, read_manifest  # noqa: E402
from ml.train import config_from_dict, split_for  # noqa: E402

ORIGINALS = (
    "originals/NORMAL/IM-0316-0001.jpeg",  # the reference of tests/ml/test_preprocessing.py
    "originals/NORMAL/IM-0249-0001.jpeg",  # the widest, 2396 x 1990
    "originals/NORMAL/NORMAL2-IM-1333-0001.jpeg",  # taller than wide
    "originals/NORMAL/NORMAL2-IM-0753-0001.jpeg",  # the smallest normal one
    "originals/PNEUMONIA/person1052_virus_1751.jpeg",  # RGB-coded
    "originals/PNEUMONIA/person1073_bacteria_3008.jpeg",  # RGB-coded
    "originals/PNEUMONIA/person579_bacteria_2383.jpeg",  # small
    "originals/PNEUMONIA/person589_bacteria_2424.jpeg",  # small
    "originals/PNEUMONIA/person1180_virus_2008.jpeg",  # small, viral
    "originals/PNEUMONIA/person326_bacteria_1505.jpeg",  # MANY_IMAGES, 1384 px wide
)
MANY_IMAGES = ("PNEUMONIA", "person326")  # 12 training images
ENDS = {"IM": 4, "NORMAL2-IM": 4, "person_bacteria": 8, "person_virus": 8}
PER_CLASS = {"NORMAL": 48, "PNEUMONIA": 144}


def choose(training: list[Record]) -> list[str]:
    """Paths of the chosen training images (224 px), in no particular order."""
    chosen = {"chest_xray/train/" + p.removeprefix("originals/") for p in ORIGINALS}
    chosen |= {r.path for r in training if (r.label, r.patient) == MANY_IMAGES}
    for family, count in ENDS.items():
        members = sorted(
            (r for r in training if acquisition_batch(r)[0] == family),
            key=lambda r: (acquisition_batch(r), r.path),
        )
        chosen |= {r.path for r in members[:count] + members[-count:]}
    for label in LABELS:
        rest = [r.path for r in training if r.label == label and r.path not in chosen]
        wanted = PER_CLASS[label] - sum(path.split("/")[2] == label for path in chosen)
        picks = np.linspace(0, len(rest) - 1, wanted).round().astype(int)
        chosen |= {rest[i] for i in picks}
    return sorted(chosen)


def write(source: Path, out: Path, paths: set[str]) -> list[dict[str, str]]:
    """Copy `paths` and write MANIFEST.csv (the source's rows, in its order)."""
    for folder in ("chest_xray", "originals"):
        shutil.rmtree(out / folder, ignore_errors=True)
    with (source / "MANIFEST.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["path"] in paths]
    for row in rows:
        target = out / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / row["path"], target)
        if hashlib.sha256(target.read_bytes()).hexdigest() != row["sha256"]:
            raise SystemExit(f"{row['path']}: the file does not match its sha256 in the manifest")
    with (out / "MANIFEST.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "patient", "sha256"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def check_held_out(source: Path, out: Path) -> int:
    """The subset's held-out batches must be images the shipped model never trained on."""
    config = config_from_dict(read_card(DEFAULT_ARTIFACT, verify=False)["training_config"])
    shipped = {
        r.path for r in split_for(dataclasses.replace(config, data_root=str(source))).validation
    }
    subset = split_for(dataclasses.replace(config, data_root=str(out))).validation
    stray = [r.path for r in subset if r.path not in shipped]
    if stray:
        raise SystemExit(f"held out here but trained on by the shipped model: {stray}")
    return len(subset)


def main() -> int:
    default = Path(os.environ.get("CHESTNET_SHARED_DATA", ROOT.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=default)
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "radiographs")
    args = parser.parse_args()
    paths = set(choose(read_manifest(args.source))) | set(ORIGINALS)
    rows = write(args.source, args.out, paths)
    held_out = check_held_out(args.source, args.out)
    size = sum((args.out / row["path"]).stat().st_size for row in rows)
    print(f"{len(rows)} files, {size / 1e6:.1f} MB; {held_out} in held-out batches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
