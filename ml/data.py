"""Manifest reading, the patient-level split and the in-memory training arrays.

The tf.data pipeline and augmentation live in `ml.augment` so this module stays
TensorFlow-free and cheap to test.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
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
    # Patients from the training batches, held out only to report the in-batch figure
    # beside the held-out-batch one; never used to choose anything.
    in_batch: list[Record] = field(default_factory=list)


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


# Names in MANIFEST.csv: IM-0115-0001 and NORMAL2-IM-0383-0001 (normal), person12_virus_44
# and person12_bacteria_45 (pneumonia). Each family is numbered in acquisition order.
_BATCH_NAME = re.compile(r"^(?P<family>NORMAL2-IM|IM|person)-?(?P<number>\d+)(?P<kind>_[a-z]+)?")


def acquisition_batch(record: Record) -> tuple[str, int] | None:
    """(family, number) read from the file name, or None when the name carries neither."""
    match = _BATCH_NAME.match(Path(record.path).name)
    if match is None:
        return None
    return match["family"] + (match["kind"] or ""), int(match["number"])


def batch_split(
    records: list[Record], *, val_fraction: float, in_batch_fraction: float = 0.0, seed: int = 0
) -> Split:
    """Hold out whole acquisition batches: the first and the last numbers of every file-name
    family (half of `val_fraction` at each end), so validation images come from periods the
    model never saw, as a hospital's images will. Patients never straddle the split.
    `in_batch_fraction` of the remaining images (whole patients, drawn with `seed`) become
    the in-batch comparison set.

    Raises ValueError when a file name carries no family and number (use patient_split).
    """
    families: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        batch = acquisition_batch(record)
        if batch is None:
            raise ValueError(f"{record.path}: the file name says no acquisition batch.")
        families[batch[0]].append(record)
    held: set[str] = set()
    for members in families.values():
        members.sort(key=lambda r: (acquisition_batch(r), r.path))
        held |= _ends(members, val_fraction / 2)
    patients = {(r.label, r.patient) for r in records if r.path in held}
    validation = [r for r in records if (r.label, r.patient) in patients]
    rest = [r for r in records if (r.label, r.patient) not in patients]
    if in_batch_fraction <= 0:
        return Split(train=rest, validation=validation)
    inner = patient_split(rest, val_fraction=in_batch_fraction, seed=seed)
    return Split(train=inner.train, validation=validation, in_batch=inner.validation)


def _ends(ordered: list[Record], fraction: float) -> set[str]:
    count = max(1, round(fraction * len(ordered)))
    return {r.path for r in ordered[:count] + ordered[-count:]}


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
