"""diagnosis.services.instance_receive: one case per study, an instance stored once, the
header's facts on the case, the upload gate's refusal kept as a result."""

from __future__ import annotations

import pydicom
import pytest
from django.utils import timezone

from devtools import dicom_files
from diagnosis import services
from diagnosis.models import AuditEvent, Case, Image
from tests.support import spies
from tests.support.images import dicom_bytes

pytestmark = pytest.mark.django_db


def _receive(data: bytes, **kw) -> services.Received:
    return services.instance_receive(data=data, source=kw.pop("source", "dimse"), **kw)


def test_first_instance_makes_a_case_with_the_headers_facts_and_queues_analysis(
    chest_dicom, published, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        received = _receive(chest_dicom(age="004Y", accession="A-77"), source_ae="MODALITY1")
    case = Case.objects.get(pk=received.case_id)
    assert received.created
    assert (case.source, case.source_ae, case.patient_id, case.age, case.sex) == (
        "dimse",
        "MODALITY1",
        "PAT-0042",
        4,
        "F",
    )
    assert (case.accession_number, case.study_description) == ("A-77", "XR CHEST 1 VIEW")
    assert case.owner.username == "dicom-network" and not case.owner.is_active
    assert not case.owner.has_usable_password()
    image = case.images.get()
    assert (image.status, image.original_format) == (Image.Status.QUEUED, "dicom")
    assert published == [("diagnosis.tasks.inference_run_task", [image.pk])]
    event = AuditEvent.objects.get(case=case)
    assert event.action == "created" and "from MODALITY1" in event.detail
    assert "PAT-0042" not in event.detail


def test_later_instances_of_the_study_join_its_case_and_a_resent_one_is_not_stored_again(
    chest_dicom,
):
    study = pydicom.uid.generate_uid()
    first = chest_dicom(study_uid=study)
    one, two = _receive(first), _receive(chest_dicom(study_uid=study))
    again = _receive(first)
    assert one.case_id == two.case_id == again.case_id
    assert not again.created and again.image_id == one.image_id
    assert Case.objects.count() == 1 and Image.objects.count() == 2
    assert AuditEvent.objects.filter(action="received").count() == 1


def test_instance_the_gate_refuses_still_makes_a_case_marked_not_analysed(
    published, django_capture_on_commit_callbacks
):
    without_pixels = dicom_files.radiograph(pixels=dicom_files.chest_pixels(side=32))
    del without_pixels.PixelData
    with django_capture_on_commit_callbacks(execute=True):
        received = _receive(dicom_files.to_bytes(without_pixels))
    image = Image.objects.get(pk=received.image_id)
    assert image.status == Image.Status.REFUSED and image.refusal_reason == "unsupported"
    assert image.refusal_message
    assert image.case.status == Case.Status.AWAITING_REVIEW  # a radiologist still sees it
    assert published == []  # nothing for the worker


def test_an_instance_without_uids_or_not_dicom_is_rejected_and_nothing_is_saved():
    with pytest.raises(services.InstanceRejected):
        _receive(b"not a dicom file at all" * 10)
    with pytest.raises(services.InstanceRejected):
        _receive(dicom_bytes())  # no Study Instance UID
    assert not Case.objects.exists() and not Image.objects.exists()


def test_stow_to_a_study_path_refuses_an_instance_of_another_study(chest_dicom, clinician):
    with pytest.raises(services.StudyMismatch):
        services.instance_receive(
            data=chest_dicom(), source="stow", owner=clinician, study_instance_uid="1.2.3"
        )
    assert not Case.objects.exists()


def test_a_stow_case_belongs_to_its_sender(chest_dicom, clinician):
    received = services.instance_receive(data=chest_dicom(), source="stow", owner=clinician)
    case = Case.objects.get(pk=received.case_id)
    assert case.owner == clinician and case.source == "stow"
    assert AuditEvent.objects.get(case=case).actor == clinician


def test_the_api_and_the_worklist_say_where_a_case_came_from(client, radiologist, chest_dicom):
    received = _receive(chest_dicom(accession="A-9"), source_ae="ORTHANC")
    client.force_login(radiologist)
    case = client.get(f"/api/v1/cases/{received.case_id}/").json()
    assert (case["source"], case["source_ae"], case["accession_number"]) == (
        "dimse",
        "ORTHANC",
        "A-9",
    )
    assert case["study_instance_uid"] == Case.objects.get().study_instance_uid
    listed = client.get("/api/v1/cases/").json()
    assert listed[0]["source"] == "dimse"
    Image.objects.update(
        status=Image.Status.REFUSED, refusal_reason="unreadable", result_at=timezone.now()
    )
    services.case_refresh_status(case_id=received.case_id)
    worklist = client.get("/api/v1/worklist/").json()
    rows = worklist["results"] if isinstance(worklist, dict) else worklist
    assert (rows[0]["source"], rows[0]["source_ae"], rows[0]["accession_number"]) == (
        "dimse",
        "ORTHANC",
        "A-9",
    )
    page = client.get("/worklist/").content.decode()
    assert "from ORTHANC" in page and "acc. A-9" in page


def test_a_failure_while_saving_leaves_no_row_and_no_file(chest_dicom, monkeypatch, settings):
    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services.receiving, "case_refresh_status", broken)
    with pytest.raises(RuntimeError):
        _receive(chest_dicom())
    assert not Case.objects.exists() and not Image.objects.exists()
    originals = settings.MEDIA_ROOT / "originals"
    assert not originals.exists() or not any(originals.rglob("*.bin"))


@pytest.mark.django_db(transaction=True)
def test_a_received_instance_is_stored_before_the_transaction_that_records_it(
    chest_dicom, monkeypatch
):
    """No row (with SQLite: no database) stays locked while the file uploads."""
    from django.core.files.storage import default_storage

    in_transaction = spies.storage_saves(monkeypatch)
    received = _receive(chest_dicom())
    assert in_transaction == [False]
    assert default_storage.exists(Image.objects.get(pk=received.image_id).original.name)


def test_header_values_never_reach_the_log_or_warnings(caplog, recwarn):
    """pydicom would log an invalid value it reads (a birth date) with the value itself."""
    import warnings

    ds = dicom_files.radiograph(pixels=dicom_files.chest_pixels(side=32), age="54")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.PatientBirthDate = "19700101-HASHED-6f1ed002ab5595859014ebf0951522d9"
    caplog.set_level("DEBUG")
    received = _receive(dicom_files.to_bytes(ds))
    assert Case.objects.get(pk=received.case_id).age == 54
    assert "HASHED" not in caplog.text
    assert not [w for w in recwarn if "HASHED" in str(w.message)]


@pytest.mark.parametrize(
    ("age", "birth", "years"),
    [
        ("054Y", "", 54),
        ("54", "", 54),  # no unit: years
        ("6 years", "", 6),
        ("18M", "", 1),
        ("", "20220915", 4),  # from the birth date and the study date (2026-11-30)
        ("", "", None),
    ],
)
def test_the_age_is_read_in_its_common_forms_and_shown_on_the_worklist(
    age, birth, years, client, radiologist
):
    import warnings

    ds = dicom_files.radiograph(pixels=dicom_files.chest_pixels(side=32), age=age)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.PatientBirthDate = birth
    received = _receive(dicom_files.to_bytes(ds))
    Image.objects.update(
        status=Image.Status.REFUSED, refusal_reason="unreadable", result_at=timezone.now()
    )
    case = services.case_refresh_status(case_id=received.case_id)
    assert case.age == years
    client.force_login(radiologist)
    row = client.get("/api/v1/worklist/").json()
    rows = row["results"] if isinstance(row, dict) else row
    assert rows[0]["age"] == years
    page = client.get("/worklist/").content.decode()
    assert (f"{years} y" if years is not None else "—") in page
