"""ml.data on a real manifest (the fixture set in tests/data/radiographs): the patient-level
split, dataset hashing, class weights and the cached training arrays."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import random
from collections import Counter

import numpy as np
import pytest

import ml.data
from ml.data import (
    LABELS,
    Record,
    class_weights,
    load_arrays,
    manifest_hash,
    patient_split,
    read_manifest,
)
from ml.preprocessing import ImageError, preprocess


@pytest.fixture(scope="module")
def records(radiograph_set) -> list[Record]:
    return read_manifest(radiograph_set)


@pytest.fixture(scope="module")
def twenty(records) -> list[Record]:
    """Ten of each label, alternating, so an order mix-up would also mix up targets."""
    normal = [r for r in records if r.label == "NORMAL"][:10]
    pneumonia = [r for r in records if r.label == "PNEUMONIA"][:10]
    return [r for pair in zip(normal, pneumonia, strict=True) for r in pair]


def _counting_preprocess(monkeypatch) -> list[int]:
    calls: list[int] = []

    def counted(data: bytes, size: int) -> np.ndarray:
        calls.append(size)
        return preprocess(data, size)

    monkeypatch.setattr(ml.data, "preprocess", counted)
    return calls


def _refuse_preprocess(monkeypatch) -> None:
    def refuse(data: bytes, size: int) -> np.ndarray:
        raise AssertionError("an image was read and preprocessed again")

    monkeypatch.setattr(ml.data, "preprocess", refuse)


# --- read_manifest --------------------------------------------------------------------------


def test_read_manifest_keeps_the_training_split_in_file_order(radiograph_set, records):
    with (radiograph_set / "MANIFEST.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["path"].startswith("chest_xray/")]

    assert [r.path for r in records] == [row["path"] for row in rows]
    on_disk = Counter(p.parent.name for p in (radiograph_set / "chest_xray/train").glob("*/*"))
    assert Counter(r.label for r in records) == on_disk and set(on_disk) == set(LABELS)
    for record in records:
        data = (radiograph_set / record.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record.sha256, record.path


def test_read_manifest_prefix_selects_other_folders(radiograph_set):
    originals = read_manifest(radiograph_set, prefix="originals/")

    assert len(originals) == len(list((radiograph_set / "originals").glob("*/*.jpeg"))) >= 10
    assert all(r.path.startswith("originals/") for r in originals)


def test_record_target_is_the_index_of_its_label(records):
    assert {r.label: r.target for r in records} == {"NORMAL": 0, "PNEUMONIA": 1}
    assert LABELS[0] == "NORMAL"


# --- patient_split --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_patient_split_never_puts_one_patient_on_both_sides(records, seed):
    split = patient_split(records, val_fraction=0.2, seed=seed)

    train_patients = {r.patient for r in split.train}
    validation_patients = {r.patient for r in split.validation}
    assert train_patients and validation_patients
    assert train_patients.isdisjoint(validation_patients)


def test_patient_split_keeps_every_record_exactly_once_in_input_order(records):
    split = patient_split(records, val_fraction=0.2, seed=0)

    assert len(split.train) + len(split.validation) == len(records)
    assert {r.path for r in split.train} | {r.path for r in split.validation} == {
        r.path for r in records
    }
    position = {r.path: i for i, r in enumerate(records)}
    for side in (split.train, split.validation):
        indices = [position[r.path] for r in side]
        assert indices == sorted(indices)


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.3])
def test_patient_split_roughly_hits_val_fraction_within_each_label(records, fraction):
    split = patient_split(records, val_fraction=fraction, seed=0)

    totals = Counter(r.label for r in records)
    held_out = Counter(r.label for r in split.validation)
    for label in LABELS:
        # Whole patients are held out until the fraction is reached: at most one patient more.
        largest = max(Counter(r.patient for r in records if r.label == label).values())
        wanted = fraction * totals[label]
        assert wanted <= held_out[label] < wanted + largest, label


def test_patient_split_is_deterministic_for_a_seed(records):
    first = patient_split(records, val_fraction=0.2, seed=7)
    again = patient_split(records, val_fraction=0.2, seed=7)

    assert first == again


def test_patient_split_differs_for_another_seed(records):
    first = {r.path for r in patient_split(records, val_fraction=0.2, seed=7).validation}
    other = {r.path for r in patient_split(records, val_fraction=0.2, seed=8).validation}

    assert first != other
    assert len(first & other) < 0.5 * len(first)  # not merely a patient or two swapped


def test_patient_split_does_not_depend_on_the_order_of_the_records(records):
    shuffled = list(records)
    random.Random(3).shuffle(shuffled)

    straight = patient_split(records, val_fraction=0.2, seed=5)
    mixed = patient_split(shuffled, val_fraction=0.2, seed=5)

    assert {r.path for r in mixed.validation} == {r.path for r in straight.validation}


def test_patient_split_with_zero_fraction_holds_nothing_out(records):
    split = patient_split(records, val_fraction=0.0, seed=0)

    assert split.validation == [] and split.train == records


def test_patient_split_keeps_all_images_of_a_patient_together(records):
    split = patient_split(records, val_fraction=0.2, seed=0)

    biggest, count = Counter(r.patient for r in records).most_common(1)[0]
    assert count > 10  # person326 has 12 images here (person23 has 30 in the full data set)
    sides = [sum(r.patient == biggest for r in side) for side in (split.train, split.validation)]
    assert sorted(sides) == [0, count]


# --- manifest_hash --------------------------------------------------------------------------


def test_manifest_hash_changes_when_one_file_changes(twenty):
    changed = list(twenty)
    changed[7] = dataclasses.replace(changed[7], sha256="0" * 64)

    assert manifest_hash(changed) != manifest_hash(twenty)


def test_manifest_hash_changes_when_a_label_changes(twenty):
    changed = list(twenty)
    changed[0] = dataclasses.replace(changed[0], label="PNEUMONIA")

    assert manifest_hash(changed) != manifest_hash(twenty)


def test_manifest_hash_changes_when_a_file_is_added_or_dropped(twenty):
    assert manifest_hash(twenty[:-1]) != manifest_hash(twenty)


def test_manifest_hash_is_a_sha256_independent_of_record_order(twenty):
    digest = manifest_hash(twenty)

    assert len(digest) == 64 and int(digest, 16) >= 0
    assert manifest_hash(list(reversed(twenty))) == digest


# --- class_weights --------------------------------------------------------------------------


def test_class_weights_give_each_class_an_equal_share_of_the_loss():
    targets = np.array([0] * 25 + [1] * 75, dtype=np.float32)

    weights = class_weights(targets)

    assert weights == pytest.approx({0: 2.0, 1: 100 / 150})
    assert weights[0] * 25 == pytest.approx(weights[1] * 75)
    assert weights[0] * 25 + weights[1] * 75 == pytest.approx(len(targets))


def test_class_weights_on_the_real_label_balance_upweight_normal(records):
    targets = np.array([r.target for r in records], dtype=np.float32)
    normal, pneumonia = (int((targets == target).sum()) for target in (0, 1))
    assert pneumonia > 2 * normal  # the data set's balance is about 1 : 2.9

    weights = class_weights(targets)

    assert weights[0] == pytest.approx(len(targets) / (2 * normal))
    assert weights[1] == pytest.approx(len(targets) / (2 * pneumonia))
    assert weights[0] > 1.0 > weights[1]
    assert weights[0] * normal == pytest.approx(weights[1] * pneumonia)


def test_class_weights_are_one_when_classes_are_balanced():
    assert class_weights(np.array([0, 1, 1, 0])) == {0: 1.0, 1: 1.0}


# --- load_arrays ----------------------------------------------------------------------------


def test_load_arrays_returns_uint8_images_and_aligned_targets(radiograph_set, twenty, tmp_path):
    images, targets = load_arrays(twenty, radiograph_set, size=64, cache_dir=tmp_path)

    assert images.shape == (20, 64, 64, 1) and images.dtype == np.uint8
    assert targets.dtype == np.float32
    assert targets.tolist() == [float(r.target) for r in twenty]
    for index in (0, 13):
        expected = preprocess((radiograph_set / twenty[index].path).read_bytes(), 64)
        np.testing.assert_array_equal(images[index], np.round(expected * 255).astype(np.uint8))
    assert images.min() == 0 and images.max() == 255


def test_load_arrays_reads_each_file_once_then_serves_the_cache(
    radiograph_set, twenty, tmp_path, monkeypatch
):
    calls = _counting_preprocess(monkeypatch)
    first = load_arrays(twenty, radiograph_set, size=64, cache_dir=tmp_path)
    assert len(calls) == 20
    assert len(list(tmp_path.glob("arrays-*.npz"))) == 1

    _refuse_preprocess(monkeypatch)
    second = load_arrays(twenty, radiograph_set, size=64, cache_dir=tmp_path)

    np.testing.assert_array_equal(second[0], first[0])
    np.testing.assert_array_equal(second[1], first[1])
    assert second[0].dtype == np.uint8


def test_load_arrays_cache_is_not_reused_for_another_size_or_changed_file(
    radiograph_set, twenty, tmp_path, monkeypatch
):
    load_arrays(twenty, radiograph_set, size=64, cache_dir=tmp_path)
    calls = _counting_preprocess(monkeypatch)

    resized, _ = load_arrays(twenty, radiograph_set, size=48, cache_dir=tmp_path)
    changed = [*twenty[:-1], dataclasses.replace(twenty[-1], sha256="f" * 64)]
    load_arrays(changed, radiograph_set, size=64, cache_dir=tmp_path)

    assert resized.shape == (20, 48, 48, 1)
    assert len(calls) == 40
    assert len(list(tmp_path.glob("arrays-*.npz"))) == 3


def test_load_arrays_from_cache_follows_the_order_of_the_records_given(
    radiograph_set, twenty, tmp_path
):
    images, targets = load_arrays(twenty, radiograph_set, size=32, cache_dir=tmp_path)

    backwards = list(reversed(twenty))
    images_back, targets_back = load_arrays(backwards, radiograph_set, size=32, cache_dir=tmp_path)

    assert targets_back.tolist() == [float(r.target) for r in backwards]
    np.testing.assert_array_equal(images_back, images[::-1])


def test_load_arrays_without_a_cache_dir_writes_nothing(
    radiograph_set, twenty, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)

    images, _ = load_arrays(twenty[:4], radiograph_set, size=32)

    assert images.shape == (4, 32, 32, 1)
    assert list(tmp_path.iterdir()) == []


def test_load_arrays_names_the_file_it_cannot_read_and_caches_nothing(tmp_path):
    data_root = tmp_path / "data"
    bad = data_root / "chest_xray/train/NORMAL/IM-9999-0001.jpeg"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a radiograph")
    cache_dir = tmp_path / "cache"
    record = Record(
        path="chest_xray/train/NORMAL/IM-9999-0001.jpeg",
        label="NORMAL",
        patient="IM-9999",
        sha256="a" * 64,
    )

    with pytest.raises(ImageError, match="IM-9999-0001.jpeg"):
        load_arrays([record], data_root, size=32, cache_dir=cache_dir)
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []


def test_load_arrays_reads_from_the_data_root(tmp_path, radiograph_set, twenty):
    copy_root = tmp_path / "copy"
    for record in twenty[:2]:
        target = copy_root / record.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((radiograph_set / record.path).read_bytes())

    images, _ = load_arrays(twenty[:2], copy_root, size=32)
    direct, _ = load_arrays(twenty[:2], radiograph_set, size=32)

    np.testing.assert_array_equal(images, direct)


def test_batch_split_holds_out_both_ends_of_every_file_name_family(radiograph_set):
    from collections import defaultdict

    from ml.data import acquisition_batch, batch_split, read_manifest

    records = read_manifest(radiograph_set)
    split = batch_split(records, val_fraction=0.15, in_batch_fraction=0.1, seed=1337)
    parts = {"train": split.train, "validation": split.validation, "in_batch": split.in_batch}
    patients = {name: {(r.label, r.patient) for r in part} for name, part in parts.items()}
    assert not patients["train"] & patients["validation"]
    assert not patients["train"] & patients["in_batch"]
    assert not patients["validation"] & patients["in_batch"]
    assert sum(len(part) for part in parts.values()) == len(records)
    numbers = defaultdict(lambda: defaultdict(list))
    for name, part in parts.items():
        for record in part:
            family, number = acquisition_batch(record)
            numbers[family][name].append(number)
    assert set(numbers) == {"IM", "NORMAL2-IM", "person_bacteria", "person_virus"}
    for by_part in numbers.values():
        # The lowest and the highest numbers of each family are validation, not training.
        everything = sorted(n for values in by_part.values() for n in values)
        assert everything[0] in by_part["validation"] and everything[-1] in by_part["validation"]
        assert min(by_part["train"]) > everything[0] and max(by_part["train"]) < everything[-1]


def test_batch_split_refuses_names_without_a_batch():
    from ml.data import Record, batch_split

    records = [
        Record(path=f"x/scan{i}.png", label="NORMAL", patient=f"p{i}", sha256="") for i in range(4)
    ]
    with pytest.raises(ValueError, match="acquisition batch"):
        batch_split(records, val_fraction=0.5)
