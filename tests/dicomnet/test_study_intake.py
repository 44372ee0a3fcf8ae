"""Which case a received instance joins: its study's open case of the same patient (Patient
ID and Issuer of Patient ID) and owner, else a new case linked to the other one, audited on
both and shown to the radiologist; an instance another owner holds gets a new instance's
answer and attaches nothing."""

from __future__ import annotations

import pydicom
import pytest
from django.utils import timezone

from diagnosis import services
from diagnosis.models import AuditEvent, Case, Image
from tests.support import factories

pytestmark = pytest.mark.django_db


def _reported(case_id: int, radiologist) -> Case:
    Image.objects.filter(case_id=case_id).update(
        status=Image.Status.REFUSED, refusal_reason="unreadable", result_at=timezone.now()
    )
    case = services.case_refresh_status(case_id=case_id)
    services.case_claim(case=case, user=radiologist)
    services.review_submit(
        case=case, author=radiologist, agrees_with_ai=None, finding="normal", report="Clear."
    )
    return Case.objects.get(pk=case_id)


def test_a_modality_and_the_pacs_forwarding_parts_of_one_study_make_one_case(chest_dicom):
    study = pydicom.uid.generate_uid()
    one = services.instance_receive(
        data=chest_dicom(study_uid=study), source="dimse", source_ae="MODALITY"
    )
    two = services.instance_receive(
        data=chest_dicom(study_uid=study), source="dimse", source_ae="ORTHANC"
    )
    assert one.case_id == two.case_id and Case.objects.count() == 1


def test_another_patient_id_in_the_same_study_starts_a_linked_case(chest_dicom):
    study = pydicom.uid.generate_uid()
    first = services.instance_receive(data=chest_dicom(study_uid=study), source="dimse")
    other = services.instance_receive(
        data=chest_dicom(study_uid=study, patient_id="PAT-9999"), source="dimse"
    )
    assert other.case_id != first.case_id and other.created
    case = Case.objects.get(pk=other.case_id)
    assert case.same_study_as_id == first.case_id
    assert case.same_study_reason == "another patient"
    assert (case.patient_id, Case.objects.get(pk=first.case_id).images.count()) == ("PAT-9999", 1)
    created = AuditEvent.objects.get(case=case, action="created")
    assert f"same Study Instance UID as case {first.case_id}" in created.detail
    noted = AuditEvent.objects.get(case_id=first.case_id, action="received")
    assert f"went to new case {case.pk}" in noted.detail
    assert "PAT-9999" not in created.detail + noted.detail  # no identifiers in the trail


def test_an_issuer_of_patient_id_that_differs_is_another_patient(chest_dicom):
    study = pydicom.uid.generate_uid()
    first = services.instance_receive(
        data=chest_dicom(study_uid=study, issuer="HOSPITAL-A"), source="dimse"
    )
    same = services.instance_receive(
        data=chest_dicom(study_uid=study, issuer="HOSPITAL-A"), source="dimse"
    )
    other = services.instance_receive(
        data=chest_dicom(study_uid=study, issuer="HOSPITAL-B"), source="dimse"
    )
    assert same.case_id == first.case_id != other.case_id
    assert Case.objects.get(pk=first.case_id).issuer_of_patient_id == "HOSPITAL-A"


def test_a_second_clinicians_stow_of_the_same_study_does_not_join_the_first_ones_case(
    chest_dicom, clinician
):
    second = factories.UserFactory(username="second-clinician", role="clinician")
    study = pydicom.uid.generate_uid()
    mine = services.instance_receive(
        data=chest_dicom(study_uid=study), source="stow", owner=clinician
    )
    theirs = services.instance_receive(
        data=chest_dicom(study_uid=study, patient_id="PAT-0042"), source="stow", owner=second
    )
    assert mine.case_id != theirs.case_id
    case = Case.objects.get(pk=theirs.case_id)
    assert (case.owner, case.same_study_as_id, case.same_study_reason) == (
        second,
        mine.case_id,
        "another sender",
    )
    assert Case.objects.get(pk=mine.case_id).images.count() == 1
    # And the network account's case of the study is not a clinician's either.
    network = services.instance_receive(data=chest_dicom(study_uid=study), source="dimse")
    assert network.case_id not in (mine.case_id, theirs.case_id)


def test_an_instance_after_the_report_starts_a_new_case_and_the_signed_one_is_unchanged(
    chest_dicom, radiologist
):
    study = pydicom.uid.generate_uid()
    first = services.instance_receive(data=chest_dicom(study_uid=study), source="dimse")
    signed = _reported(first.case_id, radiologist)
    late = services.instance_receive(data=chest_dicom(study_uid=study), source="dimse")
    assert late.case_id != first.case_id and late.created
    assert list(signed.images.values_list("pk", flat=True)) == [first.image_id]
    assert Case.objects.get(pk=first.case_id).status == Case.Status.REPORTED
    new = Case.objects.get(pk=late.case_id)
    assert (new.same_study_as_id, new.same_study_reason) == (first.case_id, "its report was signed")
    # Later instances join the new open case, not the signed one.
    again = services.instance_receive(data=chest_dicom(study_uid=study), source="dimse")
    assert again.case_id == late.case_id


def test_a_duplicate_instance_of_another_owner_is_answered_as_new_and_attaches_nothing(
    chest_dicom, clinician
):
    data = chest_dicom()
    held = services.instance_receive(data=data, source="dimse")
    resent = services.instance_receive(data=data, source="stow", owner=clinician)
    assert resent == services.Received(case_id=None, image_id=None, created=False)
    assert Image.objects.count() == 1 and Case.objects.count() == 1
    assert not Case.objects.filter(owner=clinician).exists()
    event = AuditEvent.objects.filter(case_id=held.case_id, actor=clinician).get()
    assert "not attached" in event.detail
    # The same owner re-sending is told where it is, as before.
    again = services.instance_receive(data=data, source="dimse")
    assert (again.case_id, again.image_id, again.created) == (held.case_id, held.image_id, False)


def test_the_stow_answer_for_another_owners_instance_equals_a_new_instances(
    client, chest_dicom, clinician
):
    from tests.dicomnet.test_stow import _body, _post

    held = chest_dicom()
    services.instance_receive(data=held, source="dimse")
    answers = []
    for data in (held, chest_dicom()):
        client.force_login(clinician)
        response = _post(client, None, _body(data))
        payload = response.json()
        stored = payload["00081199"]["Value"][0]
        answers.append((response.status_code, sorted(payload), sorted(stored)))
    assert answers[0] == answers[1]
    assert Case.objects.filter(owner=clinician).count() == 1  # only the fresh one


def test_the_review_page_shows_the_link_to_the_other_case_of_the_study(
    client, chest_dicom, radiologist
):
    study = pydicom.uid.generate_uid()
    first = services.instance_receive(data=chest_dicom(study_uid=study), source="dimse")
    other = services.instance_receive(
        data=chest_dicom(study_uid=study, patient_id="PAT-7"), source="dimse"
    )
    Image.objects.update(
        status=Image.Status.REFUSED, refusal_reason="unreadable", result_at=timezone.now()
    )
    services.case_refresh_status(case_id=other.case_id)
    client.force_login(radiologist)
    page = client.get(f"/cases/{other.case_id}/review/").content.decode()
    assert "Same Study Instance UID as" in page
    assert f'/cases/{first.case_id}/">case {first.case_id}</a> (another patient)' in page
    earlier = client.get(f"/cases/{first.case_id}/").content.decode()
    assert f'/cases/{other.case_id}/">case {other.case_id}</a> (another patient)' in earlier
