from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from mlops.models import DatasetImage, Event, ImportJob
from tests.support.datasets import labelled_entries, zip_bytes
from tests.support.images import png_bytes


def _media_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT) / "datasets"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_browser_import_stores_images_thumbnails_and_a_summary(import_zip, queued, dataset):
    job = import_zip(
        zip_bytes({**labelled_entries(3, 2, prefix="train/"), "train/NORMAL/.DS_Store": b"x"})
    )
    assert job.status == ImportJob.Status.DONE
    assert job.summary["imported"] == 5
    assert job.summary["by_label"] == {"NORMAL": 3, "PNEUMONIA": 2}
    assert job.summary["skipped_reasons"] == {"hidden or system file": 1}
    assert job.processed == job.total == 5
    assert not job.upload  # the uploaded zip is not kept
    image = dataset.images.get(original_name="train/NORMAL/IM-0000-0001.png")
    assert (image.split, image.source, image.patient) == ("train", "upload", "IM-0000")
    assert image.thumbnail.read().startswith(b"\x89PNG")
    assert Event.objects.filter(action="import_done", dataset=dataset).exists()


def test_import_is_queued_for_the_worker(dataset, admin_user, queued):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from mlops import services

    job = services.import_job_create(
        dataset=dataset,
        upload=SimpleUploadedFile("a.zip", zip_bytes(labelled_entries(1, 1))),
        user=admin_user,
    )
    assert job.status == ImportJob.Status.QUEUED
    assert queued["import"] == []  # only once the transaction commits


def test_same_content_is_imported_once(import_zip, dataset):
    entries = labelled_entries(2, 2)
    first = import_zip(zip_bytes(entries))
    duplicate_inside = {
        **labelled_entries(0, 1, seed=40),
        "PNEUMONIA/copy.png": entries["NORMAL/IM-0000-0001.png"],
    }
    second = import_zip(zip_bytes({**entries, **duplicate_inside}))
    assert first.summary["imported"] == 4
    assert second.summary["imported"] == 1
    assert second.summary["skipped_reasons"]["already in the dataset (same content)"] == 5
    assert dataset.images.count() == 5


def test_a_non_image_entry_imports_nothing_and_leaves_no_file(import_zip, dataset, settings):
    job = import_zip(
        zip_bytes({**labelled_entries(4, 4), "PNEUMONIA/notes.png": b"not an image at all"})
    )
    assert job.status == ImportJob.Status.FAILED
    assert "PNEUMONIA/notes.png" in job.error
    assert dataset.images.count() == 0
    assert _media_files(settings) == []


def test_a_truncated_zip_is_refused_at_upload(import_zip):
    from mlops.services import ServiceError

    with pytest.raises(ServiceError, match="not a zip archive"):
        import_zip(zip_bytes(labelled_entries(1, 1))[:-40])


def test_a_corrupt_entry_fails_the_import_with_a_reason(import_zip, dataset):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in labelled_entries(2, 2).items():
            archive.writestr(name, data)
    data = bytearray(buffer.getvalue())
    data[200] ^= 0xFF  # inside the first member: its CRC no longer matches
    job = import_zip(bytes(data))
    assert job.status == ImportJob.Status.FAILED
    assert "CRC" in job.error or "Bad" in job.error
    assert dataset.images.count() == 0


def test_path_traversal_in_a_browser_zip_imports_nothing(import_zip, dataset):
    job = import_zip(zip_bytes({**labelled_entries(2, 2), "../PNEUMONIA/x.png": png_bytes(seed=9)}))
    assert job.status == ImportJob.Status.FAILED
    assert "unsafe path" in job.error
    assert dataset.images.count() == 0


def test_import_command_reads_a_server_folder(tmp_path, db):
    for name, data in labelled_entries(2, 3, prefix="test/").items():
        (tmp_path / "set" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "set" / name).write_bytes(data)
    call_command("import_dataset", "server-set", str(tmp_path / "set"))
    images = DatasetImage.objects.filter(dataset__name="server-set")
    assert images.count() == 5
    assert set(images.values_list("split", "source").distinct()) == {("test", "folder")}


def test_import_command_reads_a_zip_and_refuses_a_bad_one(tmp_path, db):
    good = tmp_path / "good.zip"
    good.write_bytes(zip_bytes(labelled_entries(1, 1)))
    call_command("import_dataset", "zipped", str(good))
    assert DatasetImage.objects.filter(dataset__name="zipped").count() == 2
    bad = tmp_path / "bad.zip"
    bad.write_bytes(zip_bytes({"NORMAL/x.png": b"garbage"}))
    with pytest.raises(CommandError, match="Nothing imported"):
        call_command("import_dataset", "zipped", str(bad))
    assert DatasetImage.objects.filter(dataset__name="zipped").count() == 2


def test_import_command_refuses_a_symlink_in_a_folder(tmp_path, db):
    for name, data in labelled_entries(1, 1).items():
        (tmp_path / "set" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "set" / name).write_bytes(data)
    (tmp_path / "set" / "NORMAL" / "link.png").symlink_to("/etc/hostname")
    with pytest.raises(CommandError, match="symbolic links"):
        call_command("import_dataset", "linked", str(tmp_path / "set"))
    assert not DatasetImage.objects.filter(dataset__name="linked").exists()


def _write(folder: Path, entries: dict[str, bytes]) -> Path:
    for name, data in entries.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def _patients_with_several_images(patients: int, per_patient: int) -> dict[str, bytes]:
    entries = {}
    for p in range(patients):
        for k in range(1, per_patient + 1):
            seed = p * 10 + k
            entries[f"NORMAL/IM-{p:04d}-{k:04d}.png"] = png_bytes(seed=seed)
            entries[f"PNEUMONIA/person{p}_bacteria_{k}.png"] = png_bytes(seed=5000 + seed)
    return entries


def test_a_plain_folder_imported_by_the_command_can_be_trained_at_once(
    tmp_path, db, queued, django_capture_on_commit_callbacks
):
    from mlops.models import TrainingRun

    folder = _write(tmp_path / "plain", labelled_entries(16, 16))
    out = io.StringIO()
    call_command("import_dataset", "plain", str(folder), stdout=out)
    assert "split assigned (seed 1337)" in out.getvalue()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("train_model", "--dataset", "plain", "--no-wait")
    assert queued["training"] == [TrainingRun.objects.get(dataset__name="plain").pk]
    job = ImportJob.objects.get(dataset__name="plain")
    assert job.summary["split_assigned"] == {
        "validation_fraction": 0.15,
        "test_fraction": 0.15,
        "seed": 1337,
    }
    assert set(job.summary["by_split"]) == {"train", "validation", "test"}
    trail = Event.objects.filter(dataset__name="plain").values_list("action", "detail")
    assert ("split_assigned", "seed 1337, validation 0.15, test 0.15") in trail


def test_the_split_given_at_import_keeps_each_patient_in_one_split(import_zip, dataset):
    job = import_zip(zip_bytes(_patients_with_several_images(patients=12, per_patient=3)))
    dataset.refresh_from_db()
    assert job.summary["split_assigned"]["seed"] == dataset.split_seed == 1337
    rows = list(dataset.images.values_list("patient", "split"))
    splits_of: dict[str, set[str]] = {}
    for patient, split in rows:
        splits_of.setdefault(patient, set()).add(split)
    assert len(splits_of) == 24 and all(len(s) == 1 for s in splits_of.values())
    assert {split for _, split in rows} == {"train", "validation", "test"}


def test_a_folder_with_split_folders_keeps_its_splits(tmp_path, db):
    entries = {
        **labelled_entries(8, 8, prefix="train/"),
        **labelled_entries(2, 2, prefix="val/", seed=20),
        **labelled_entries(2, 2, prefix="test/", seed=30),
    }
    call_command("import_dataset", "given", str(_write(tmp_path / "given", entries)))
    job = ImportJob.objects.get(dataset__name="given")
    assert job.summary["by_split"] == {"train": 16, "validation": 4, "test": 4}
    assert "split_assigned" not in job.summary
    assert job.dataset.split_seed is None
    assert not Event.objects.filter(dataset=job.dataset, action="split_assigned").exists()


@pytest.mark.parametrize("first_prefix", ["", "train/"], ids=["assigned", "from-folders"])
def test_a_second_plain_import_leaves_the_existing_split_and_says_so(
    import_zip, dataset, first_prefix
):
    import_zip(zip_bytes(labelled_entries(10, 10, prefix=first_prefix)))
    before = dict(dataset.images.values_list("pk", "split"))
    second = import_zip(zip_bytes(labelled_entries(3, 2, seed=50)))
    # New images wait, unassigned (out of training), until the admin assigns splits again.
    assert second.summary["split_assigned"] is None
    assert second.summary["left_unassigned"] == 5
    assert second.summary["by_split"] == {"unassigned": 5}
    assert dict(dataset.images.filter(pk__in=before).values_list("pk", "split")) == before
    done = Event.objects.filter(action="import_done", dataset=dataset).latest("pk")
    assert done.detail.endswith("5 without a split folder left unassigned")
