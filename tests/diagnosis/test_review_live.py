"""The review page's live endpoint (`case_review_live`, polled by static/js/review_live.js):
who may poll it, what it answers when nothing and when something changed (results, claims,
new images), that it renders what the page renders, and that its polls are audited once
per few minutes."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from diagnosis import services
from diagnosis.models import AuditEvent, Case, Image
from tests.support import factories

pytestmark = pytest.mark.django_db


def _live(client, case: Case, since: str = ""):
    return client.get(reverse("case_review_live", args=[case.pk]), {"since": since})


def _page_version(client, case: Case) -> str:
    return client.get(reverse("case_review", args=[case.pk])).context["live"]["version"]


def _processing_case(owner) -> tuple[Case, Image]:
    case = factories.CaseFactory(owner=owner)
    image = factories.ImageFactory(case=case, status=Image.Status.PROCESSING)
    return services.case_refresh_status(case_id=case.pk), image


def _result_arrives(image: Image, probability: float = 0.83) -> None:
    Image.objects.filter(pk=image.pk).update(status=Image.Status.DONE, result_at=timezone.now())
    factories.PredictionFactory(image=image, probability=probability)
    services.case_refresh_status(case_id=image.case_id)


def test_a_clinician_may_not_poll_the_review_page(client_for, clinician):
    case = factories.awaiting_review_case(owner=clinician)
    assert _live(client_for(clinician), case).status_code == 403


def test_a_case_that_does_not_exist_is_a_404(client_for, radiologist):
    response = client_for(radiologist).get(reverse("case_review_live", args=[999999]))
    assert response.status_code == 404


def test_only_get_and_never_cached(client_for, clinician, radiologist):
    case = factories.awaiting_review_case(owner=clinician)
    client = client_for(radiologist)
    assert client.post(reverse("case_review_live", args=[case.pk])).status_code == 405
    response = _live(client, case)
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_an_unchanged_page_gets_the_version_alone(client_for, clinician, radiologist):
    case = factories.awaiting_review_case(owner=clinician, patient_id="MRN-LIVE")
    client = client_for(radiologist)
    version = _page_version(client, case)
    answer = _live(client, case, version)
    assert answer.json() == {"version": version, "changed": False}
    assert b"MRN-LIVE" not in answer.content


def test_a_result_that_arrives_changes_the_card_and_offers_the_claim(
    client_for, clinician, radiologist
):
    case, image = _processing_case(clinician)
    client = client_for(radiologist)
    page = client.get(reverse("case_review", args=[case.pk])).content.decode()
    assert "Analysis not complete" in page and 'id="claim-form"' not in page
    version = _page_version(client, case)

    _result_arrives(image)
    answer = _live(client, case, version).json()
    assert answer["changed"] is True and answer["version"] != version
    assert set(answer) == {
        "version",
        "changed",
        "status",
        "status_display",
        "claimed_by",
        "claimed_by_you",
        "panel_version",
        "panel",
        "case_ai",
        "images",
    }
    assert answer["status"] == "awaiting_review" and answer["status_display"] == "Awaiting review"
    assert answer["claimed_by"] == "" and answer["claimed_by_you"] is False
    assert 'id="claim-form"' in answer["panel"] and "csrfmiddlewaretoken" in answer["panel"]
    (card,) = answer["images"]
    assert (card["id"], card["number"], card["status"]) == (image.pk, 1, "done")
    opening = f'<section class="card image-card rr-cell" id="image-{image.pk}"'
    assert card["html"].startswith(opening)
    assert "P(pneumonia) 0.83" in card["html"] and "data-live-status" in card["html"]
    heatmap = reverse("api_image_file", args=[image.pk, "heatmap"])
    assert f'data-heatmap-url="{heatmap}"' in card["html"]
    # The page as it is now shows that version: the poll then finds nothing new.
    assert _page_version(client, case) == answer["version"]


def test_a_refusal_reaches_the_card(client_for, clinician, radiologist):
    case, image = _processing_case(clinician)
    client = client_for(radiologist)
    version = _page_version(client, case)
    Image.objects.filter(pk=image.pk).update(
        status=Image.Status.REFUSED,
        refusal_reason="not_chest_radiograph",
        refusal_message="A photograph.",
        result_at=timezone.now(),
    )
    services.case_refresh_status(case_id=case.pk)
    (card,) = _live(client, case, version).json()["images"]
    assert card["status"] == "refused" and "Not analysed by the AI." in card["html"]


def test_a_claim_by_another_radiologist_changes_the_panel(
    client_for, clinician, radiologist, radiologist2
):
    case = factories.awaiting_review_case(owner=clinician)
    client = client_for(radiologist)
    version = _page_version(client, case)
    panel_before = client.get(reverse("case_review", args=[case.pk])).context["live"]["panel"]

    services.case_claim(case=case, user=radiologist2)
    answer = _live(client, case, version).json()
    assert answer["claimed_by"] == "dr-radiologist2" and answer["claimed_by_you"] is False
    assert answer["panel_version"] != panel_before
    assert "Another radiologist, dr-radiologist2, has claimed this case." in answer["panel"]
    assert 'id="claim-form"' not in answer["panel"]

    services.case_release(case=case, user=radiologist2)
    released = _live(client, case, answer["version"]).json()
    assert released["claimed_by"] == "" and 'id="claim-form"' in released["panel"]
    assert released["panel_version"] == panel_before


def test_the_claimant_gets_the_sign_form_with_the_agreement_beside_the_image(
    client_for, clinician, radiologist
):
    case = factories.awaiting_review_case(owner=clinician)
    services.case_claim(case=case, user=radiologist)
    answer = _live(client_for(radiologist), case).json()
    assert answer["claimed_by_you"] is True and 'id="review-form"' in answer["panel"]
    (card,) = answer["images"]
    assert 'form="review-form"' in card["html"] and "data-agreement" in card["html"]


def test_a_new_image_of_the_study_appears_as_a_new_card(client_for, clinician, radiologist):
    case = factories.awaiting_review_case(owner=clinician)
    client = client_for(radiologist)
    version = _page_version(client, case)
    added = factories.ImageFactory(case=case, status=Image.Status.QUEUED, name="lateral")
    services.case_refresh_status(case_id=case.pk)
    answer = _live(client, case, version).json()
    assert [(card["number"], card["status"]) for card in answer["images"]] == [
        (1, "done"),
        (2, "queued"),
    ]
    new = answer["images"][1]
    assert new["id"] == added.pk and "Image 2 · lateral" in new["html"]
    assert "data-viewer-full" in new["html"] and "data-src=" in new["html"]
    assert answer["status"] == "processing" and "Analysis not complete" in answer["panel"]


def test_polls_are_audited_once_per_few_minutes(client_for, clinician, radiologist):
    case = factories.awaiting_review_case(owner=clinician)
    client = client_for(radiologist)
    version = _page_version(client, case)  # the page: one "review page" view
    for _ in range(5):
        _live(client, case, version)
    _live(client, case)
    views = AuditEvent.objects.filter(action=AuditEvent.Action.VIEWED, case_ref=case.pk)
    assert [(e.actor, e.detail) for e in views] == [(radiologist, "review page")]


def test_a_poll_alone_is_recorded_as_a_view(client_for, clinician, radiologist):
    case = factories.awaiting_review_case(owner=clinician)
    client = client_for(radiologist)
    for _ in range(3):
        _live(client, case)
    views = AuditEvent.objects.filter(action=AuditEvent.Action.VIEWED, case_ref=case.pk)
    assert [(e.actor, e.detail) for e in views] == [(radiologist, "review page")]
