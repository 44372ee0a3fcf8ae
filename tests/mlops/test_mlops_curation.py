from __future__ import annotations

import csv
import io
import zipfile

import pytest

from mlops import services
from mlops.execute import imports
from mlops.models import LabelChange
from tests.support.datasets import labelled_entries, zip_bytes


@pytest.fixture
def imported(import_zip, dataset):
    import_zip(zip_bytes(labelled_entries(20, 30)))
    return dataset


def test_relabel_is_audited_with_who_when_old_and_new(imported, admin_user):
    image = imported.images.filter(label="NORMAL").first()
    services.image_relabel(image=image, label="PNEUMONIA", user=admin_user)
    change = LabelChange.objects.get(image=image)
    assert (change.actor, change.old_label, change.new_label) == (admin_user, "NORMAL", "PNEUMONIA")
    assert change.at is not None
    image.refresh_from_db()
    assert image.label == "PNEUMONIA"


def test_excluded_images_leave_the_splits(imported, admin_user):
    image = imported.images.first()
    services.image_set_excluded(image=image, excluded=True, reason="lateral view", user=admin_user)
    services.dataset_assign_splits(
        dataset=imported, validation_fraction=0.2, test_fraction=0.2, seed=1, user=admin_user
    )
    image.refresh_from_db()
    assert (image.excluded, image.exclusion_reason, image.split) == (True, "lateral view", "")


def test_splits_are_by_patient_reproducible_and_report_class_balance(imported, admin_user):
    # Two images of one patient must land in the same split.
    imported.images.filter(
        original_name__in=["NORMAL/IM-0000-0001.png", "NORMAL/IM-0001-0001.png"]
    ).update(patient="IM-SAME")
    balance = services.dataset_assign_splits(
        dataset=imported, validation_fraction=0.2, test_fraction=0.2, seed=7, user=admin_user
    )
    first = dict(imported.images.values_list("pk", "split"))
    assert sum(sum(v.values()) for k, v in balance.items() if k != "unassigned") == 50
    assert all(
        balance[s]["NORMAL"] > 0 and balance[s]["PNEUMONIA"] > 0
        for s in ("train", "validation", "test")
    )
    assert len(set(imported.images.filter(patient="IM-SAME").values_list("split", flat=True))) == 1
    services.dataset_assign_splits(
        dataset=imported, validation_fraction=0.2, test_fraction=0.2, seed=7, user=admin_user
    )
    assert dict(imported.images.values_list("pk", "split")) == first


def test_export_is_a_reimportable_zip_with_a_manifest(imported, admin_user, import_zip):
    services.dataset_assign_splits(
        dataset=imported, validation_fraction=0.2, test_fraction=0.2, seed=7, user=admin_user
    )
    path = services.dataset_export(dataset=imported, user=admin_user)
    with zipfile.ZipFile(path) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("MANIFEST.csv").decode())))
        assert len(rows) == 50
        assert all(archive.read(row["path"]) for row in rows)
    assert {row["split"] for row in rows} == {"train", "validation", "test"}
    other = services.dataset_create(name="copy", user=admin_user)
    from django.core.files.uploadedfile import SimpleUploadedFile

    job = services.import_job_create(
        dataset=other, upload=SimpleUploadedFile("e.zip", path.read_bytes()), user=admin_user
    )
    imports.import_job_run(job_id=job.pk)
    assert other.images.count() == 50
    assert sorted(other.images.values_list("sha256", flat=True)) == sorted(
        imported.images.values_list("sha256", flat=True)
    )
    path.unlink()
