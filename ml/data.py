"""Manifest reading, the patient-level split and the in-memory training arrays.

The tf.data pipeline and augmentation live in `ml.augment` so this module stays
TensorFlow-free and cheap to test.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.preprocessing import PREPROCESSING_VERSION, ImageError, preprocess

log = logging.getLogger(__name__)

LABELS: tuple[str, str] = ("NORMAL", "PNEUMONIA")
# The fewest images of each class a split may hold before training is refused.
MIN_TRAIN_PER_CLASS = 8
MIN_VALIDATION_PER_CLASS = 2


@dataclass(frozen=True)
class Record:
    path: str
    label: str
    patient: str
    sha256: str

    @property
    def target(self) -> int:
        return LABELS.index(self.label)


@dataclass(frozen=True)
class Split:
    train: list[Record]
    validation: list[Record]


def read_manifest(data_root: Path, *, prefix: str = "chest_xray/train/") -> list[Record]:
    """Rows of MANIFEST.csv whose path starts with `prefix`, in file order."""
    with (data_root / "MANIFEST.csv").open(newline="") as handle:
        rows = [Record(**row) for row in csv.DictReader(handle)]
    return [row for row in rows if row.path.startswith(prefix)]


def manifest_hash(records: list[Record]) -> str:
    """Identifies exactly which files (by content) a model was trained and validated on."""
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: r.path):
        digest.update(f"{record.path},{record.label},{record.sha256}\n".encode())
    return digest.hexdigest()


def subset_per_class(records: list[Record], limit: int, seed: int) -> list[Record]:
    """At most `limit` records of each label, drawn with `seed` (all of them if limit <= 0)."""
    if limit <= 0:
        return records
    rng = np.random.default_rng(seed)
    chosen: list[Record] = []
    for label in LABELS:
        of_label = [r for r in records if r.label == label]
        picks = rng.choice(len(of_label), size=min(limit, len(of_label)), replace=False)
        chosen += [of_label[i] for i in sorted(picks)]
    return chosen


def patient_split(records: list[Record], *, val_fraction: float, seed: int) -> Split:
    """Stratified by label, grouped by patient: no patient is ever on both sides."""
    by_patient: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in records:
        by_patient[(record.label, record.patient)].append(record)
    rng = random.Random(seed)
    validation_keys: set[tuple[str, str]] = set()
    for label in LABELS:
        keys = sorted(key for key in by_patient if key[0] == label)
        rng.shuffle(keys)
        wanted = val_fraction * sum(len(by_patient[key]) for key in keys)
        taken = 0
        for key in keys:
            if taken >= wanted:
                break
            validation_keys.add(key)
            taken += len(by_patient[key])
    train = [r for r in records if (r.label, r.patient) not in validation_keys]
    validation = [r for r in records if (r.label, r.patient) in validation_keys]
    return Split(train=train, validation=validation)


def load_arrays(
    records: list[Record], data_root: Path, *, size: int, cache_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocess every record once: uint8 images (N, size, size, 1) and 0/1 targets.

    Stored as uint8 to keep 5,000 images in ~250 MB; the cache is keyed by content and
    preprocessing version, so a changed file or pipeline never reuses stale arrays.
    """
    # In the given order (manifest_hash sorts): a cached array must line up with `records`.
    listing = "".join(f"{r.path},{r.label},{r.sha256}\n" for r in records)
    key = hashlib.sha256(f"{listing}:{size}:{PREPROCESSING_VERSION}".encode()).hexdigest()[:16]
    cache = cache_dir / f"arrays-{key}.npz" if cache_dir else None
    if cache is not None and cache.exists():
        with np.load(cache) as stored:
            return stored["images"], stored["targets"]
    images, targets = _preprocess_all(records, data_root, size)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, images=images, targets=targets)
    return images, targets


def _preprocess_all(
    records: list[Record], data_root: Path, size: int
) -> tuple[np.ndarray, np.ndarray]:
    from tqdm import tqdm

    images = np.zeros((len(records), size, size, 1), dtype=np.uint8)
    targets = np.zeros(len(records), dtype=np.float32)
    for index, record in enumerate(tqdm(records, desc="preprocess", unit="img")):
        try:
            pixels = preprocess((data_root / record.path).read_bytes(), size)
        except ImageError as exc:
            raise ImageError(f"{record.path}: {exc}") from exc
        images[index] = np.round(pixels * 255.0).astype(np.uint8)
        targets[index] = record.target
    return images, targets


def class_weights(targets: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights so each class contributes equally to the loss."""
    counts = np.bincount(targets.astype(int), minlength=len(LABELS))
    return {
        label: float(len(targets) / (len(LABELS) * count)) for label, count in enumerate(counts)
    }
