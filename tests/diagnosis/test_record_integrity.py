"""A record a hospital can defend (issue 9, part 1): signed reports and audit events cannot
be changed or deleted by any path, a reported case cannot be deleted, corrections are
amendments by the report's owner with a reason, and signing needs the claim."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts import roles
from diagnosis import services
from diagnosis.models import AuditEvent, Case, Image, ImmutableRecord, Review
from tests.support import factories, reviews

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed(radiologist):
    return reviews.signed_case(radiologist)


def test_a_signed_report_cannot_be_changed_or_deleted_through_the_orm(signed):
    review = signed.reviews.get()
    review.report = "Rewritten."
    with pytest.raises(ImmutableRecord):
        review.save()
    with pytest.raises(ImmutableRecord):
        review.delete()
    with pytest.raises(ImmutableRecord):
        Review.objects.filter(pk=review.pk).update(report="Rewritten.")
    with pytest.raises(ImmutableRecord):
        Review.objects.filter(pk=review.pk).delete()
    assert Review.objects.get(pk=review.pk).report == "RLL."


def test_audit_events_cannot_be_changed_or_deleted(signed):
    event = AuditEvent.objects.filter(case=signed).first()
    with pytest.raises(ImmutableRecord):
        AuditEvent.objects.filter(pk=event.pk).update(detail="nothing happened")
    with pytest.raises(ImmutableRecord):
        AuditEvent.objects.all().delete()
    with pytest.raises(ImmutableRecord):
        event.delete()


def test_a_reported_case_cannot_be_deleted_even_by_the_orm(signed):
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        signed.delete()
    with pytest.raises(services.ServiceError, match="cannot be deleted"):
        services.case_delete(case=signed, user=None)


ADMIN_ATTEMPTS = [
    ("get", "admin:diagnosis_review_delete", "review"),
    ("post", "admin:diagnosis_review_delete", "review"),
    ("post", "admin:diagnosis_review_change", "review"),
    ("get", "admin:diagnosis_case_delete", "case"),
    ("post", "admin:diagnosis_case_delete", "case"),
    ("post", "admin:diagnosis_auditevent_delete", "event"),
    ("post", "admin:diagnosis_auditevent_change", "event"),
]


@pytest.mark.parametrize(("method", "name", "target"), ADMIN_ATTEMPTS)
def test_the_superuser_cannot_delete_or_edit_the_record_in_the_admin(
    client_for, admin_user, signed, method, name, target
):
    objects = {
        "review": signed.reviews.get(),
        "case": signed,
        "event": AuditEvent.objects.filter(case=signed).first(),
    }
    client = client_for(admin_user)
    url = reverse(name, args=[objects[target].pk])
    response = getattr(client, method)(url, {"post": "yes", "report": "Rewritten."})
    assert response.status_code == 403
    assert Review.objects.get(case=signed).report == "RLL."
    assert Case.objects.filter(pk=signed.pk).exists()
    assert AuditEvent.objects.filter(pk=objects["event"].pk).exists()


def test_the_admin_cannot_edit_a_reported_cases_clinical_fields(client_for, admin_user, signed):
    client = client_for(admin_user)
    page = client.get(reverse("admin:diagnosis_case_change", args=[signed.pk])).content.decode()
    assert 'name="patient_id"' not in page and 'name="owner"' not in page
    client.post(
        reverse("admin:diagnosis_case_change", args=[signed.pk]),
        {"patient_id": "SOMEONE-ELSE", "owner": admin_user.pk},
    )
    assert Case.objects.get(pk=signed.pk).patient_id == signed.patient_id


def test_an_admin_edit_of_an_unreported_case_is_audited_without_the_values(client_for, admin_user):
    case = factories.awaiting_review_case(patient_id="MRN-1")
    client = client_for(admin_user)
    form = {
        "owner": case.owner_id,
        "patient_id": "MRN-2",
        "age": 4,
        "sex": "U",
        "indication": "",
        "urgency": "routine",
        "images-TOTAL_FORMS": 1,
        "images-INITIAL_FORMS": 1,
        "images-0-id": case.images.get().pk,
        "images-0-case": case.pk,
        "reviews-TOTAL_FORMS": 0,
        "reviews-INITIAL_FORMS": 0,
    }
    response = client.post(reverse("admin:diagnosis_case_change", args=[case.pk]), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Case.objects.get(pk=case.pk).patient_id == "MRN-2"
    event = AuditEvent.objects.get(case=case, action="admin_changed")
    assert "patient_id" in event.detail and "MRN" not in event.detail


def test_deleting_an_unreported_case_in_the_admin_removes_its_files_and_is_audited(
    client_for, admin_user, settings, django_capture_on_commit_callbacks
):
    case = factories.awaiting_review_case()
    image = case.images.get()
    files = [image.original.path, image.preview.path, image.prediction.heatmap.path]
    client = client_for(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:diagnosis_case_delete", args=[case.pk]), {"post": "yes"}
        )
    assert response.status_code == 302
    assert not Case.objects.filter(pk=case.pk).exists() and not Image.objects.exists()
    assert not any(__import__("os").path.exists(path) for path in files)
    event = AuditEvent.objects.get(action="admin_deleted")
    assert event.case is None and event.case_ref == case.pk and event.actor == admin_user


def test_the_admin_offers_no_bulk_delete_of_cases(client_for, admin_user, signed):
    page = client_for(admin_user).get(reverse("admin:diagnosis_case_changelist"))
    assert "delete_selected" not in page.content.decode()


def test_signing_needs_the_claim(radiologist):
    case = factories.awaiting_review_case()
    with pytest.raises(services.ServiceError, match="Claim the case"):
        services.review_sign(
            case=case, author=radiologist, agrees_with_ai=True, finding="normal", report="x"
        )


def test_only_the_signer_amends_and_always_with_a_reason(signed, radiologist, radiologist2):
    fields = {"case": signed, "agrees_with_ai": False, "finding": "normal", "report": "Normal."}
    with pytest.raises(services.ServiceError, match="Only dr-radiologist may amend"):
        services.review_submit(author=radiologist2, reason="I disagree.", **fields)
    with pytest.raises(services.ServiceError, match="reason for the amendment"):
        services.review_submit(author=radiologist, reason="  ", **fields)
    amended = services.review_submit(author=radiologist, reason="Second look.", **fields)
    assert amended.version == 2 and signed.reviews.count() == 2


def test_a_second_radiologist_cannot_amend_through_the_api_or_the_page(
    signed, radiologist2, api_client_for, client_for
):
    payload = {
        "agrees_with_ai": False,
        "finding": "normal",
        "report": "Mine now.",
        "amendment_reason": "I disagree.",
    }
    response = api_client_for(radiologist2).post(
        f"/api/v1/cases/{signed.pk}/review/", payload, format="json"
    )
    assert response.status_code == 409 and "may amend" in response.json()["detail"]
    page = client_for(radiologist2).post(
        reverse("case_review", args=[signed.pk]), {**payload, "agrees_with_ai": "no"}
    )
    assert "may amend" in page.content.decode()
    assert signed.reviews.count() == 1


def test_an_admin_reassigns_a_report_with_a_reason_and_the_new_owner_amends(
    signed, admin_user, radiologist, radiologist2, client_for
):
    client = client_for(admin_user)
    url = reverse("report_reassign", args=[signed.pk])
    client.post(url, {"radiologist": radiologist2.pk, "reason": ""})
    assert Case.objects.get(pk=signed.pk).report_owner == radiologist
    client.post(url, {"radiologist": radiologist2.pk, "reason": "Dr Radiologist left."})
    assert Case.objects.get(pk=signed.pk).report_owner == radiologist2
    event = AuditEvent.objects.get(action="reassigned", case=signed)
    assert event.actor == admin_user and "Dr Radiologist left." in event.detail
    reviews.submit(signed, radiologist2, report="Confirmed.", reason="Reassigned to me.")
    with pytest.raises(services.ServiceError, match="may amend"):
        reviews.submit(signed, radiologist, report="Still mine?", reason="No.")


def test_only_an_admin_reassigns_a_report(signed, radiologist2, client_for):
    url = reverse("report_reassign", args=[signed.pk])
    page = client_for(radiologist2).post(url, {"radiologist": radiologist2.pk, "reason": "Mine."})
    assert page.status_code == 403
    assert "Only administrators can reassign a signed report." in page.content.decode()
    assert Case.objects.get(pk=signed.pk).report_owner != radiologist2


def test_a_report_is_reassigned_only_to_a_radiologist(signed, admin_user, clinician):
    with pytest.raises(services.ServiceError, match="not a radiologist"):
        services.report_reassign(case=signed, to=clinician, reason="x", by=admin_user)


def test_the_api_claims_and_releases(api_client_for, radiologist, radiologist2):
    case = factories.awaiting_review_case()
    first, second = api_client_for(radiologist), api_client_for(radiologist2)
    assert first.post(f"/api/v1/cases/{case.pk}/claim/").status_code == 200
    taken = second.post(f"/api/v1/cases/{case.pk}/claim/")
    assert taken.status_code == 409 and "already claimed" in taken.json()["detail"]
    assert second.post(f"/api/v1/cases/{case.pk}/release/").status_code == 409
    released = first.post(f"/api/v1/cases/{case.pk}/release/")
    assert released.status_code == 200 and released.json()["claimed_by"] is None
    assert second.post(f"/api/v1/cases/{case.pk}/claim/").status_code == 200


def test_only_radiologists_claim_through_the_api(api_client_for, clinician):
    case = factories.awaiting_review_case(owner=clinician)
    assert api_client_for(clinician).post(f"/api/v1/cases/{case.pk}/claim/").status_code == 403
    assert roles.is_clinician(clinician)
