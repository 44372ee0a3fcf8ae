"""Every copy of a DICOM file that leaves the clinical record (dataset imports, feedback
copies, exports) carries no identifier of its source and the source's exact pixels."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile

import pydicom
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from diagnosis import services as diagnosis_services
from ml.preprocessing import preprocess
from mlops import services
from mlops.execute.feedback import feedback_pull
from mlops.models import DatasetImage
from tests.support import factories
from tests.support.datasets import labelled_entries, zip_bytes
from tests.support.images import dicom_bytes

STUDY = "1.2.826.0.1.3680043.10.77.1"
SERIES = "1.2.826.0.1.3680043.10.77.1.2"


def _source_dicom(instance: str = "1.2.826.0.1.3680043.10.77.1.2.3") -> pydicom.Dataset:
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes()))
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-998877"
    ds.PatientBirthDate = "19610305"
    ds.StudyDate = "20240611"
    ds.InstitutionName = "St Elsewhere Hospital"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, SERIES
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = instance
    ds.private_block(0x0029, "ACME 1.0", create=True).add_new(0x01, "LO", "Doe^Jane")
    return ds


def _bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _assert_deidentified_copy_of(stored: bytes, source: pydicom.Dataset) -> None:
    identifiers = [
        b"Doe",
        b"Jane",
        b"MRN-998877",
        b"19610305",
        b"20240611",
        b"Elsewhere",
        STUDY.encode(),  # a prefix of the series and instance UIDs too
    ]
    assert [text for text in identifiers if text in stored] == []
    copy = pydicom.dcmread(io.BytesIO(stored))
    assert copy.PatientIdentityRemoved == "YES"
    assert copy.PixelData == source.PixelData
    assert copy.file_meta.MediaStorageSOPInstanceUID == copy.SOPInstanceUID


# --- Imports --------------------------------------------------------------------------------


def test_an_imported_dicom_is_stored_deidentified_with_its_pixels(import_zip, dataset):
    source = _source_dicom()
    job = import_zip(
        zip_bytes({**labelled_entries(1, 1), "NORMAL/IM-0042-0001.dcm": _bytes(source)})
    )
    assert job.summary["imported"] == 3, job.error
    row = dataset.images.get(format="dicom")
    stored = row.file.read()
    _assert_deidentified_copy_of(stored, source)
    assert row.sha256 == hashlib.sha256(stored).hexdigest()
    assert row.view.read().startswith(b"\x89PNG") and row.thumbnail.read().startswith(b"\x89PNG")


def test_the_same_dicom_imported_twice_is_still_one_image(import_zip, dataset):
    data = _bytes(_source_dicom())
    first = import_zip(zip_bytes({"NORMAL/a.dcm": data, "NORMAL/b.dcm": data}))
    second = import_zip(zip_bytes({"PNEUMONIA/c.dcm": data}))
    assert first.summary["imported"] == 1
    assert first.summary["skipped_reasons"] == {"same content as NORMAL/a.dcm": 1}
    assert second.summary["skipped_reasons"] == {"already in the dataset (same content)": 1}
    assert dataset.images.count() == 1


def test_images_of_one_study_stay_one_study_and_the_salt_keys_the_uids(
    import_zip, dataset, settings
):
    first, second = _source_dicom("1.2.826.0.1.3680043.10.77.9"), _source_dicom()
    import_zip(zip_bytes({"NORMAL/a.dcm": _bytes(first), "NORMAL/b.dcm": _bytes(second)}))
    a, b = (pydicom.dcmread(io.BytesIO(row.file.read())) for row in dataset.images.all())
    assert a.StudyInstanceUID == b.StudyInstanceUID != STUDY
    assert a.SOPInstanceUID != b.SOPInstanceUID
    settings.CHESTNET_DEID_SALT = "another-installation"
    copy = services.deidentified_copy(_bytes(first))
    assert pydicom.dcmread(io.BytesIO(copy)).StudyInstanceUID != a.StudyInstanceUID


# --- Feedback -------------------------------------------------------------------------------


@pytest.fixture
def feedback_dataset(dataset, admin_user):
    return services.dataset_set_feedback_target(dataset=dataset, user=admin_user)


def _signed_case(radiologist, original: bytes, finding: str = "pneumonia"):
    case = factories.awaiting_review_case(patient_id="MRN-998877", claimed_by=radiologist)
    case.images.get().original.save("x", ContentFile(original))
    diagnosis_services.review_sign(
        case=case, author=radiologist, agrees_with_ai=True, finding=finding, report="Report."
    )
    feedback_pull()
    return case


def test_a_feedback_copy_of_a_dicom_case_is_deidentified_dicom(
    feedback_dataset, radiologist, admin_user, client_for
):
    source = _source_dicom()
    _signed_case(radiologist, _bytes(source))
    row = DatasetImage.objects.get(dataset=feedback_dataset)
    assert (row.format, row.label, row.source) == ("dicom", "PNEUMONIA", "feedback")
    assert row.original_name.endswith(".dcm") and "MRN" not in row.original_name + row.patient
    stored = row.file.read()
    _assert_deidentified_copy_of(stored, source)
    assert row.sha256 == hashlib.sha256(stored).hexdigest()
    assert preprocess(stored, 64).shape[:2] == (64, 64)  # what training reads
    view = client_for(admin_user).get(reverse("mlops:image_file", args=[row.pk, "view"]))
    assert view.status_code == 200 and b"".join(view.streaming_content).startswith(b"\x89PNG")


def test_a_png_case_is_still_copied_as_a_pixels_only_png(feedback_dataset, radiologist):
    _signed_case(radiologist, labelled_entries(1, 0)["NORMAL/IM-0000-0001.png"], "normal")
    row = DatasetImage.objects.get(dataset=feedback_dataset)
    assert (row.format, row.label) == ("png", "NORMAL")
    assert row.file.read().startswith(b"\x89PNG") and not row.view


# --- Exports --------------------------------------------------------------------------------


def _raw_row(dataset, data: bytes) -> DatasetImage:
    """A DICOM row as imports stored it before they de-identified: the source file."""
    row = DatasetImage(
        dataset=dataset,
        original_name="NORMAL/old.dcm",
        format="dicom",
        sha256=hashlib.sha256(data).hexdigest(),
        label="NORMAL",
        source=DatasetImage.Source.FOLDER,
        patient="old",
    )
    row.file.save("image", ContentFile(data), save=False)
    row.save()
    return row


def test_an_export_writes_every_dicom_deidentified(import_zip, dataset, admin_user):
    old_source, new_source = _source_dicom(), _source_dicom("1.2.826.0.1.3680043.10.77.5")
    import_zip(zip_bytes({**labelled_entries(1, 1), "PNEUMONIA/new.dcm": _bytes(new_source)}))
    imported = dataset.images.get(format="dicom")
    old = _raw_row(dataset, _bytes(old_source))
    path = services.dataset_export(dataset=dataset, user=admin_user)
    with zipfile.ZipFile(path) as archive:
        manifest = list(csv.DictReader(io.StringIO(archive.read("MANIFEST.csv").decode())))
        files = {row["path"]: archive.read(row["path"]) for row in manifest}
    path.unlink()
    by_pk = {int(name.rsplit("/", 1)[1][:6]): data for name, data in files.items()}
    _assert_deidentified_copy_of(by_pk[old.pk], old_source)
    _assert_deidentified_copy_of(by_pk[imported.pk], new_source)
    assert by_pk[imported.pk] == imported.file.read()  # de-identifying again changes nothing
    assert all(row["sha256"] == hashlib.sha256(files[row["path"]]).hexdigest() for row in manifest)
