"""Role and ownership rules of every HTML page and file route."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from diagnosis.models import AuditEvent, Case, Review
from ml.outcome import REFUSAL_REASONS
from tests.support import factories
from tests.support.images import png_bytes

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "name,args",
    [
        ("case_list", []),
        ("case_new", []),
        ("case_detail", [1]),
        ("worklist", []),
        ("case_review", [1]),
        ("image_file", [1, "preview"]),
    ],
)
def test_anonymous_users_are_sent_to_login(client, name, args):
    response = client.get(reverse(name, args=args))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_clinician_creates_a_case_and_is_sent_to_its_page(client_for, clinician, enqueued):
    client = client_for(clinician)
    response = client.post(
        reverse("case_new"),
        {
            "patient_id": "P-7",
            "age": 4,
            "sex": "F",
            "indication": "fever",
            "urgency": "urgent",
            "images": [
                SimpleUploadedFile("a.png", png_bytes()),
                SimpleUploadedFile("b.png", png_bytes(seed=1)),
            ],
        },
    )
    case = Case.objects.get()
    assert response.status_code == 302 and response.url == reverse("case_detail", args=[case.pk])
    assert case.images.count() == 2 and case.urgency == "urgent"
    page = client.get(response.url)
    assert b"not a diagnosis" in page.content and b"pediatric" in page.content
    assert b"P-7" not in response.url.encode()


def test_clinician_cannot_open_another_clinicians_case(client_for, clinician, clinician2):
    image = factories.ImageFactory(case__owner=clinician2)
    client = client_for(clinician)
    assert client.get(reverse("case_detail", args=[image.case_id])).status_code == 404
    assert client.get(reverse("image_file", args=[image.pk, "preview"])).status_code == 404
    assert client.get(reverse("image_file", args=[image.pk, "original"])).status_code == 404
    assert client.post(reverse("image_retry", args=[image.pk])).status_code == 404


def test_owner_and_radiologist_can_fetch_images_and_heatmaps(client_for, clinician, radiologist):
    prediction = factories.PredictionFactory(image__case__owner=clinician)
    for user in (clinician, radiologist):
        client = client_for(user)
        for kind in ("preview", "heatmap", "original"):
            response = client.get(reverse("image_file", args=[prediction.image_id, kind]))
            assert response.status_code == 200, (user, kind)
            assert response["Cache-Control"].startswith("private")


def test_clinician_cannot_open_worklist_or_review(client_for, clinician):
    case = factories.awaiting_review_case(owner=clinician)
    client = client_for(clinician)
    assert client.get(reverse("worklist")).status_code == 403
    assert client.get(reverse("case_review", args=[case.pk])).status_code == 403
    assert client.post(reverse("case_claim", args=[case.pk])).status_code == 403
    response = client.post(
        reverse("case_review", args=[case.pk]),
        {"agrees_with_ai": "yes", "finding": "normal", "report": "x"},
    )
    assert response.status_code == 403 and not Review.objects.exists()


def test_radiologist_cannot_create_cases(client_for, radiologist):
    assert client_for(radiologist).get(reverse("case_new")).status_code == 403


def test_radiologist_claims_reviews_and_signs(client_for, radiologist, clinician):
    case = factories.awaiting_review_case(owner=clinician)
    client = client_for(radiologist)
    assert str(case.pk).encode() in client.get(reverse("worklist")).content
    assert client.post(reverse("case_claim", args=[case.pk])).status_code == 302
    page = client.get(reverse("case_review", args=[case.pk]))
    assert (
        page.status_code == 200
        and b"data-overlay-opacity" in page.content
        and b"data-invert" in page.content
    )
    response = client.post(
        reverse("case_review", args=[case.pk]),
        {"agrees_with_ai": "no", "finding": "other", "report": "Atelectasis."},
    )
    assert response.status_code == 302
    case.refresh_from_db()
    assert case.status == "reported"
    owner_page = client_for(clinician).get(reverse("case_detail", args=[case.pk]))
    assert b"Atelectasis." in owner_page.content
    actions = set(AuditEvent.objects.filter(case=case).values_list("action", flat=True))
    assert {"claimed", "viewed", "signed"} <= actions


def test_second_radiologist_sees_the_case_is_claimed(client_for, radiologist, radiologist2):
    case = factories.awaiting_review_case()
    client_for(radiologist).post(reverse("case_claim", args=[case.pk]))
    client = client_for(radiologist2)
    response = client.post(reverse("case_claim", args=[case.pk]), follow=True)
    assert b"already claimed" in response.content
    response = client.post(
        reverse("case_review", args=[case.pk]),
        {"agrees_with_ai": "yes", "finding": "normal", "report": "mine"},
    )
    assert response.status_code == 400 and not Review.objects.exists()


def test_amend_from_review_page_keeps_old_version(client_for, radiologist):
    review = factories.ReviewFactory(author=radiologist, case=factories.awaiting_review_case())
    Case.objects.filter(pk=review.case_id).update(status="reported", report_owner=radiologist)
    response = client_for(radiologist).post(
        reverse("case_review", args=[review.case_id]),
        {
            "agrees_with_ai": "yes",
            "finding": "pneumonia",
            "report": "Amended.",
            "amendment_reason": "typo",
        },
    )
    assert response.status_code == 302
    assert list(Review.objects.filter(case_id=review.case_id).values_list("version", "report")) == [
        (2, "Amended."),
        (1, "No consolidation."),
    ]


def test_admin_sees_audit_trail(client_for, admin_user, clinician):
    case = factories.CaseFactory(owner=clinician)
    AuditEvent.objects.create(actor=clinician, action="viewed", case=case)
    client = client_for(admin_user)
    assert client.get(reverse("admin:diagnosis_auditevent_changelist")).status_code == 200
    assert client.get(reverse("admin:diagnosis_case_changelist")).status_code == 200
    assert client_for(clinician).get(reverse("admin:index")).status_code == 302


def test_healthz_reports_database_and_broker_without_login(client, db, monkeypatch, settings):
    monkeypatch.setattr("chestnet_site.health.broker_state", lambda: ("unavailable", 0))
    settings.CHESTNET_DICOM_PORT = 0
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "broker": "unavailable",
        "workers": 0,
        "dicom_listener": "off",
        "storage": "ok",
        "orphans": {"last_sweep": None, "removed": 0},
        "pacs_outbox": {"failed": 0, "pending": 0},
        "monitoring": {"open_alerts": [], "unacknowledged": 0},
    }


def test_healthz_reports_a_storage_that_cannot_be_reached_and_stays_up(client, db, monkeypatch):
    from botocore.exceptions import EndpointConnectionError
    from django.core.files.storage import default_storage

    def store_down(name):
        raise EndpointConnectionError(endpoint_url="http://store:8333/chestnet")

    monkeypatch.setattr("chestnet_site.health.broker_state", lambda: ("ok", 1))
    monkeypatch.setattr(default_storage, "exists", store_down)
    response = client.get(reverse("healthz"))
    assert response.status_code == 200 and response.json()["storage"] == "unavailable"


def test_case_page_says_a_refused_image_was_not_analysed_and_why(client_for, clinician):
    case = factories.refused_case(
        owner=clinician, message="The image looks like a photograph, not a radiograph."
    )
    page = client_for(clinician).get(reverse("case_detail", args=[case.pk])).content.decode()
    assert "Not analysed by the AI." in page
    assert REFUSAL_REASONS["not_chest_radiograph"] in page
    assert "The image looks like a photograph, not a radiograph." in page
    assert "not_chest_radiograph" not in page  # plain words only, never the code
    assert "data-overlay-toggle" not in page and "Retry analysis" not in page
    assert "AI label" not in page and 'class="badge flag"' not in page
    assert "not a diagnosis" in page  # the intended-use statement stays


def test_review_page_of_a_refused_case_offers_signing_without_ai_result(client_for, radiologist):
    case = factories.refused_case(
        reason="outside_intended_use", message="Adult patient.", claimed_by=radiologist
    )
    page = client_for(radiologist).get(reverse("case_review", args=[case.pk])).content.decode()
    assert "Not analysed by the AI." in page and REFUSAL_REASONS["outside_intended_use"] in page
    assert "outside_intended_use" not in page
    assert "data-overlay-toggle" not in page and "data-invert" in page
    assert 'id="review-form"' in page and "P(pneumonia)" not in page


def test_review_page_of_an_all_refused_case_does_not_ask_about_the_ai(client_for, radiologist):
    case = factories.refused_case(claimed_by=radiologist)
    page = client_for(radiologist).get(reverse("case_review", args=[case.pk])).content.decode()
    assert 'id="review-form"' in page and 'id="no-ai-result"' in page
    assert "Do you agree with the AI?" not in page and 'name="agrees_with_ai"' not in page


def test_radiologist_signs_an_all_refused_case_without_an_ai_opinion(client_for, radiologist):
    case = factories.refused_case(claimed_by=radiologist)
    client = client_for(radiologist)
    response = client.post(
        reverse("case_review", args=[case.pk]), {"finding": "normal", "report": "Clear lungs."}
    )
    assert response.status_code == 302
    review = Review.objects.get(case=case)
    assert review.agrees_with_ai is None and review.finding == "normal"
    assert Case.objects.get(pk=case.pk).status == Case.Status.REPORTED
    page = client.get(reverse("case_review", args=[case.pk])).content.decode()
    assert "no AI result" in page and "disagrees" not in page


def test_review_of_an_analysed_case_still_requires_an_ai_opinion(client_for, radiologist):
    case = factories.awaiting_review_case(claimed_by=radiologist)
    client = client_for(radiologist)
    page = client.get(reverse("case_review", args=[case.pk])).content
    assert b"Do you agree with the AI on image 1?" in page
    response = client.post(
        reverse("case_review", args=[case.pk]), {"finding": "normal", "report": "Clear lungs."}
    )
    assert response.status_code == 400
    assert b"Say whether you agree with the AI on this image." in response.content
    assert not Review.objects.exists()


def test_analysed_image_shows_probability_with_its_spread_and_warnings(client_for, clinician):
    prediction = factories.PredictionFactory(
        image__case__owner=clinician,
        probability=0.91,
        uncertainty=0.04,
        warnings=["The DICOM window was missing; a default was used."],
    )
    page = client_for(clinician).get(reverse("case_detail", args=[prediction.image.case_id]))
    text = page.content.decode()
    assert "P(pneumonia) 0.91 ± 0.04</strong>, ensemble spread" in text
    assert "The DICOM window was missing; a default was used." in text
    assert "data-overlay-toggle" in text and "Not analysed by the AI" not in text


def test_single_network_prediction_shows_probability_without_spread(client_for, clinician):
    prediction = factories.PredictionFactory(
        image__case__owner=clinician, probability=0.8, uncertainty=None
    )
    page = client_for(clinician).get(reverse("case_detail", args=[prediction.image.case_id]))
    text = page.content.decode()
    assert "P(pneumonia) 0.80</strong> — AI label" in text and "±" not in text


def test_worklist_lists_a_refused_case_as_awaiting_review_without_flag(client_for, radiologist):
    refused = factories.refused_case()
    page = client_for(radiologist).get(reverse("worklist")).content.decode()
    row = page[page.index(f'data-case-id="{refused.pk}"') :].split("</tr>")[0]
    assert "Not analysed by the AI" in row and "flagged" not in row
    assert "Claim" in row


def test_worklist_counts_refused_images_beside_the_probability(client_for, radiologist):
    case = factories.awaiting_review_case(probability=0.3)
    factories.ImageFactory(case=case, status="refused", refusal_reason="unsupported")
    page = client_for(radiologist).get(reverse("worklist")).content.decode()
    row = page[page.index(f'data-case-id="{case.pk}"') :].split("</tr>")[0]
    assert "0.30" in row and "1 image not analysed by the AI" in row


def test_case_list_shows_a_refused_case_as_awaiting_review(client_for, clinician):
    factories.refused_case(owner=clinician)
    page = client_for(clinician).get(reverse("case_list")).content.decode()
    assert "Awaiting review" in page and "Not analysed by the AI" in page
    assert "Failed" not in page
