from __future__ import annotations

import io
import zipfile

import pytest

from mlops.sources import Entry, ImportRefused, patient_from_name, plan_import, zip_entries
from tests.support.datasets import labelled_entries, zip_bytes


def _plan(entries: dict[str, bytes], **kw):
    archive = zipfile.ZipFile(io.BytesIO(zip_bytes(entries, **kw)))
    return plan_import(zip_entries(archive))


def test_labels_splits_and_patients_come_from_the_folders_and_names():
    plan = _plan(
        {
            **labelled_entries(1, 1, prefix="chest_xray/train/"),
            **labelled_entries(1, 0, prefix="val/", seed=5),
        }
    )
    by_name = {item.name: item for item in plan.items}
    assert by_name["chest_xray/train/NORMAL/IM-0000-0001.png"].split == "train"
    assert by_name["chest_xray/train/PNEUMONIA/person0_bacteria_1.png"].label == "PNEUMONIA"
    assert by_name["val/NORMAL/IM-0005-0001.png"].split == "validation"
    assert by_name["val/NORMAL/IM-0005-0001.png"].patient == "IM-0005"


def test_files_outside_split_folders_are_planned_without_a_split():
    """The import gives them one (mlops.execute.imports); a wrapper folder is no split."""
    plan = _plan({**labelled_entries(1, 0, prefix="kermany/"), **labelled_entries(0, 1)})
    assert {item.name: item.split for item in plan.items} == {
        "kermany/NORMAL/IM-0000-0001.png": "",
        "PNEUMONIA/person0_bacteria_1.png": "",
    }


def test_patient_key_follows_the_manifest_rule():
    assert patient_from_name("x/NORMAL2-IM-1427-0001.jpeg") == "NORMAL2-IM-1427"
    assert patient_from_name("person1000_virus_1681.jpeg") == "person1000"
    assert patient_from_name("scan-7.png") == "scan-7"


@pytest.mark.parametrize(
    "name",
    [
        "../NORMAL/evil.png",
        "/etc/NORMAL/x.png",
        "NORMAL\\..\\x.png",
        "a/../../NORMAL/x.png",
        "C:/NORMAL/x.png",
    ],
)
def test_path_traversal_names_are_refused(name):
    with pytest.raises(ImportRefused, match="unsafe path"):
        plan_import(
            [
                Entry(name=name, size=10, compressed=10),
                Entry(name="NORMAL/a.png", size=10, compressed=10),
            ]
        )


def test_symlinks_are_refused():
    entries = {**labelled_entries(1, 1), "NORMAL/link.png": b"/etc/passwd"}
    with pytest.raises(ImportRefused, match="symbolic links"):
        _plan(entries, symlinks=("NORMAL/link.png",))


def test_duplicate_names_are_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, pytest.warns(UserWarning):
        archive.writestr("NORMAL/a.png", b"1")
        archive.writestr("NORMAL/a.png", b"2")
    with pytest.raises(ImportRefused, match="appears twice"):
        plan_import(zip_entries(zipfile.ZipFile(buffer)))


def test_a_zip_bomb_is_refused_before_decompressing(settings):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("NORMAL/bomb.png", b"\0" * (20 * 1024 * 1024))
    with pytest.raises(ImportRefused, match="zip bomb"):
        plan_import(zip_entries(zipfile.ZipFile(buffer)))


def test_too_many_files_or_bytes_are_refused(settings):
    settings.CHESTNET_IMPORT_MAX_FILES = 3
    with pytest.raises(ImportRefused, match="at most 3"):
        _plan(labelled_entries(2, 2))
    settings.CHESTNET_IMPORT_MAX_FILES = 100
    settings.CHESTNET_IMPORT_MAX_MB = 1
    with pytest.raises(ImportRefused, match="expands to more than 1 MB"):
        plan_import(
            [Entry(name=f"NORMAL/{i}.png", size=400_000, compressed=400_000) for i in range(3)]
        )


def test_wrong_structure_and_empty_folders_are_refused():
    with pytest.raises(ImportRefused, match="No images found in NORMAL/ or PNEUMONIA/"):
        _plan({"images/a.png": b"x", "readme.txt": b"hello"})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in labelled_entries(1, 0).items():
            archive.writestr(name, data)
        archive.writestr(zipfile.ZipInfo("PNEUMONIA/"), b"")
    with pytest.raises(ImportRefused, match="PNEUMONIA/: the folder is empty"):
        plan_import(zip_entries(zipfile.ZipFile(buffer)))


def test_system_files_and_stray_files_are_skipped_with_a_reason():
    plan = _plan(
        {
            **labelled_entries(1, 1),
            "__MACOSX/NORMAL/._a.png": b"x",
            "NORMAL/.DS_Store": b"x",
            "notes.txt": b"x",
        }
    )
    reasons = dict(plan.skipped)
    assert reasons["__MACOSX/NORMAL/._a.png"] == "hidden or system file"
    assert reasons["notes.txt"] == "not inside a NORMAL/ or PNEUMONIA/ folder"
    assert len(plan.items) == 2
