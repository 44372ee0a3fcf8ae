"""One agree/disagree per analysed image, beside the image; the case agrees only when every
image does; the amend form starts from the current report; the clinician's view says the
finding in words with the signing time."""

from __future__ import annotations

import pytest
from django.urls import reverse

from diagnosis import services
from diagnosis.models import Case, Image, Review
from tests.support import factories

pytestmark = pytest.mark.django_db


def _three_image_case(radiologist) -> tuple[Case, list[Image]]:
    """Two analysed images (0.9 and 0.2) and one the AI refused, claimed by `radiologist`."""
    case = factories.CaseFactory()
    first = factories.PredictionFactory(image__case=case, probability=0.9).image
    second = factories.PredictionFactory(image__case=case, probability=0.2, label="NORMAL").image
    refused = factories.ImageFactory(
        case=case, status=Image.Status.REFUSED, refusal_reason="not_chest_radiograph"
    )
    case = services.case_refresh_status(case_id=case.pk)
    services.case_claim(case=case, user=radiologist)
    return case, [first, second, refused]


def _sign(client, case, **answers):
    payload = {"finding": "pneumonia", "report": "Right lower lobe consolidation.", **answers}
    return client.post(reverse("case_review", args=[case.pk]), payload)


def test_each_analysed_image_has_its_own_question_beside_it(client_for, radiologist):
    case, (first, second, refused) = _three_image_case(radiologist)
    page = client_for(radiologist).get(reverse("case_review", args=[case.pk])).content.decode()
    assert page.count("data-agreement>") == 2
    assert f'name="agrees_{first.pk}"' in page and f'name="agrees_{second.pk}"' in page
    assert f'name="agrees_{refused.pk}"' not in page
    assert 'form="review-form"' in page  # the radios belong to the sign form


def test_answers_per_image_are_kept_with_the_results_they_were_given_on(client_for, radiologist):
    case, (first, second, refused) = _three_image_case(radiologist)
    response = _sign(
        client_for(radiologist), case, **{f"agrees_{first.pk}": "yes", f"agrees_{second.pk}": "no"}
    )
    assert response.status_code == 302
    review = Review.objects.get(case=case)
    by_image = {entry["image"]: entry for entry in review.ai_results}
    assert (by_image[first.pk]["agrees"], by_image[second.pk]["agrees"]) == (True, False)
    assert "agrees" not in by_image[refused.pk]
    assert review.agrees_with_ai is False  # the case agrees only when every image does


def test_a_missing_answer_on_one_image_signs_nothing_and_says_which(client_for, radiologist):
    case, (first, second, _) = _three_image_case(radiologist)
    response = _sign(client_for(radiologist), case, **{f"agrees_{first.pk}": "yes"})
    assert response.status_code == 400
    assert "agree with the AI on this image" in response.content.decode()
    assert not Review.objects.exists()


def test_one_answer_for_all_images_still_works(client_for, radiologist):
    case, (first, second, _) = _three_image_case(radiologist)
    assert _sign(client_for(radiologist), case, agrees_with_ai="yes").status_code == 302
    review = Review.objects.get(case=case)
    assert [e.get("agrees") for e in review.ai_results] == [True, True, None]


def test_the_clinicians_page_leads_with_the_report_and_each_images_agreement(
    client_for, radiologist
):
    case, (first, second, refused) = _three_image_case(radiologist)
    _sign(
        client_for(radiologist), case, **{f"agrees_{first.pk}": "yes", f"agrees_{second.pk}": "no"}
    )
    page = client_for(case.owner).get(reverse("case_detail", args=[case.pk])).content.decode()
    assert page.index('id="report"') < page.index('class="card image-card"')
    assert page.index("Right lower lobe consolidation.") < page.index(f'data-image-id="{first.pk}"')

    def card(image):
        return page[page.index(f'data-image-id="{image.pk}"') :].split("</section>")[0]

    assert "The radiologist agrees with the AI on this image." in card(first)
    assert "The radiologist disagrees with the AI on this image." in card(second)
    assert "data-agreement hidden>" in card(refused)  # nothing to agree with


def test_the_amend_form_starts_from_the_current_report(client_for, radiologist):
    case, (first, second, _) = _three_image_case(radiologist)
    client = client_for(radiologist)
    _sign(client, case, **{f"agrees_{first.pk}": "yes", f"agrees_{second.pk}": "no"})
    response = client.get(reverse("case_review", args=[case.pk]))
    form = response.context["form"]
    assert form["report"].value() == "Right lower lobe consolidation."
    assert form["finding"].value() == "pneumonia"
    assert (form[f"agrees_{first.pk}"].value(), form[f"agrees_{second.pk}"].value()) == (
        "yes",
        "no",
    )
    assert "Right lower lobe consolidation.</textarea>" in response.content.decode()


def test_the_api_takes_answers_per_image(client_for, radiologist):
    case, (first, second, _) = _three_image_case(radiologist)
    client = client_for(radiologist)
    url = reverse("api_case_review", args=[case.pk])
    unknown = {"finding": "normal", "report": "x", "image_agreement": {"999999": True}}
    assert client.post(url, unknown, content_type="application/json").status_code == 409
    payload = {
        "finding": "normal",
        "report": "Clear.",
        "image_agreement": {str(first.pk): False, str(second.pk): True},
    }
    response = client.post(url, payload, content_type="application/json")
    assert response.status_code == 201
    review = response.json()["review"]
    assert review["finding_display"] == "Normal" and review["agrees_with_ai"] is False
    assert [e.get("agrees") for e in review["ai_results"]] == [False, True, None]


def test_images_are_named_by_their_file_or_their_dicom_view(client_for, clinician):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from devtools import dicom_files
    from tests.support.images import png_bytes

    client = client_for(clinician)
    upload = SimpleUploadedFile("left-lateral.png", png_bytes(), content_type="image/png")
    client.post(reverse("case_new"), {"urgency": "routine", "images": [upload]})
    assert Image.objects.get().name == "left-lateral.png"
    ds = dicom_files.radiograph(pixels=dicom_files.chest_pixels(side=32))
    received = services.instance_receive(data=dicom_files.to_bytes(ds), source="dimse")
    assert Image.objects.get(pk=received.image_id).name == "PA chest"
    case = client.get(f"/api/v1/cases/{Image.objects.first().case_id}/").json()
    assert case["images"][0]["name"] == "left-lateral.png"
