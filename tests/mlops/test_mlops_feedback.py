from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from diagnosis import services as diagnosis_services
from mlops import services
from mlops.execute.feedback import feedback_pull
from mlops.models import DatasetImage
from tests.support import factories
from tests.support.images import dicom_bytes


def _dicom_with_identifiers() -> bytes:
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes()))
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-998877"
    ds.PatientBirthDate = "20190101"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture
def feedback_dataset(dataset, admin_user):
    return services.dataset_set_feedback_target(dataset=dataset, user=admin_user)


def _signed(radiologist, finding: str):
    """A case signed by the radiologist, then one feedback pull (the periodic task's work)."""
    case = factories.awaiting_review_case(patient_id="MRN-998877", claimed_by=radiologist)
    image = case.images.get()
    image.original.save("x", ContentFile(_dicom_with_identifiers()))
    diagnosis_services.review_sign(
        case=case, author=radiologist, agrees_with_ai=True, finding=finding, report="Report."
    )
    feedback_pull()
    return case


def _amend(case, radiologist, *, finding: str, report: str, reason: str) -> None:
    """The radiologist amends the report (disagreeing with the AI), then one feedback pull."""
    form = {"agrees_with_ai": False, "finding": finding, "reason": reason}
    diagnosis_services.review_amend(case=case, author=radiologist, report=report, **form)
    feedback_pull()


def test_signed_pneumonia_reports_feed_the_chosen_dataset_without_identifiers(
    feedback_dataset, radiologist
):
    case = _signed(radiologist, "pneumonia")
    row = DatasetImage.objects.get(dataset=feedback_dataset)
    assert (row.label, row.source, row.format, row.feedback_case) == (
        "PNEUMONIA",
        "feedback",
        "dicom",  # de-identified DICOM: full bit depth (tests/mlops/test_mlops_deidentification)
        case,
    )
    stored = row.file.read()
    assert stored[128:132] == b"DICM"
    for identifier in (b"Doe", b"Jane", b"MRN-998877", b"20190101"):
        assert identifier not in stored
    assert "MRN" not in row.patient and "MRN" not in row.original_name


def test_other_findings_are_kept_out_and_an_amendment_relabels(feedback_dataset, radiologist):
    case = _signed(radiologist, "other")
    assert not DatasetImage.objects.exists()
    _amend(case, radiologist, finding="normal", report="Normal after all.", reason="Second look.")
    assert DatasetImage.objects.get().label == "NORMAL"
    _amend(case, radiologist, finding="pneumonia", report="Pneumonia.", reason="Third look.")
    row = DatasetImage.objects.get()
    assert row.label == "PNEUMONIA" and row.label_changes.count() == 1


def test_without_a_feedback_dataset_nothing_is_copied(dataset, radiologist):
    _signed(radiologist, "pneumonia")
    assert not DatasetImage.objects.exists()


def test_only_one_dataset_receives_feedback(dataset, admin_user):
    other = services.dataset_create(name="other", user=admin_user)
    services.dataset_set_feedback_target(dataset=dataset, user=admin_user)
    services.dataset_set_feedback_target(dataset=other, user=admin_user)
    dataset.refresh_from_db()
    assert not dataset.is_feedback_target and other.is_feedback_target


def test_images_the_ai_refused_do_not_feed_the_dataset(feedback_dataset, radiologist):
    case = factories.refused_case(reason="not_chest_radiograph", claimed_by=radiologist)
    diagnosis_services.review_sign(
        case=case, author=radiologist, agrees_with_ai=False, finding="normal", report="Clear."
    )
    feedback_pull()
    assert not DatasetImage.objects.filter(dataset=feedback_dataset).exists()


def test_signing_copies_nothing_until_the_pull_and_a_second_pull_copies_nothing_again(
    feedback_dataset, radiologist
):
    case = factories.awaiting_review_case(claimed_by=radiologist)
    diagnosis_services.review_sign(
        case=case, author=radiologist, agrees_with_ai=True, finding="pneumonia", report="R."
    )
    assert not DatasetImage.objects.exists()  # the clinical app pushes nothing
    assert feedback_pull() == 1
    assert feedback_pull() == 0
    assert DatasetImage.objects.count() == 1


def test_reports_signed_before_the_dataset_was_chosen_are_not_pulled(
    dataset, admin_user, radiologist
):
    case = factories.awaiting_review_case(claimed_by=radiologist)
    diagnosis_services.review_sign(
        case=case, author=radiologist, agrees_with_ai=True, finding="pneumonia", report="R."
    )
    services.dataset_set_feedback_target(dataset=dataset, user=admin_user)
    assert feedback_pull() == 0 and not DatasetImage.objects.exists()


def test_the_feedback_pull_runs_on_the_beat_schedule(settings):
    schedule = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "mlops.tasks.feedback_pull_task" in schedule
