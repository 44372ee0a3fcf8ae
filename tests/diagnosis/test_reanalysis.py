from __future__ import annotations

import pytest

from diagnosis import services
from diagnosis.models import Case, Image, Prediction, PriorPrediction
from tests.support import factories


def test_rerun_keeps_the_old_result_and_queues_the_images(
    admin_user, enqueued, django_capture_on_commit_callbacks
):
    case = factories.awaiting_review_case(probability=0.9)
    image = case.images.get()
    old = image.prediction
    with django_capture_on_commit_callbacks(execute=True):
        assert services.case_reanalyse(case=case, user=admin_user) == 1
    prior = PriorPrediction.objects.get(image=image)
    assert (prior.model_version, prior.probability, prior.heatmap.name) == (
        "test-1",
        0.9,
        old.heatmap.name,
    )
    assert prior.superseded_by == admin_user
    assert not Prediction.objects.filter(image=image).exists()
    image.refresh_from_db()
    assert image.status == Image.Status.QUEUED and enqueued == [image.pk]
    assert Case.objects.get(pk=case.pk).status == Case.Status.QUEUED


def test_a_case_without_results_cannot_be_rerun(admin_user):
    case = factories.ImageFactory().case
    with pytest.raises(services.ServiceError, match="No analysed image"):
        services.case_reanalyse(case=case, user=admin_user)


def test_rerun_queues_a_refused_image_again_and_forgets_the_refusal(
    admin_user, enqueued, django_capture_on_commit_callbacks
):
    case = factories.refused_case(reason="outside_intended_use", message="Adult patient.")
    image = case.images.get()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.case_reanalyse(case=case, user=admin_user) == 1
    image.refresh_from_db()
    assert (image.status, image.refusal_reason, image.refusal_message) == (
        Image.Status.QUEUED,
        "",
        "",
    )
    assert enqueued == [image.pk] and not PriorPrediction.objects.exists()


def test_rerun_of_a_refused_image_may_be_refused_again(admin_user, enqueued):
    from tests.support.fakes import FakePredictor, fake_refusal

    case = factories.refused_case(reason="not_chest_radiograph", message="A photograph.")
    image = case.images.get()
    services.case_reanalyse(case=case, user=admin_user)
    predictor = FakePredictor(result=fake_refusal("not_chest_radiograph", "Still a photograph."))
    outcome = services.inference_run(
        image_id=image.pk, token="rerun", predictor_loader=lambda: predictor
    )
    image.refresh_from_db()
    assert outcome == "refused" and image.refusal_message == "Still a photograph."
    assert Case.objects.get(pk=case.pk).status == Case.Status.AWAITING_REVIEW


def test_a_report_keeps_the_result_it_was_signed_against_beside_a_later_one(
    admin_user, radiologist, client_for
):
    """An admin re-run of a reported case: the page shows the result of record and the
    later one, labelled, never the later one in its place."""
    from tests.support.fakes import FakePredictor, FakeResult

    case = factories.awaiting_review_case(probability=0.9, claimed_by=radiologist)
    services.review_sign(
        case=case, author=radiologist, agrees_with_ai=True, finding="pneumonia", report="RLL."
    )
    signed = case.reviews.get().ai_results
    assert [(e["status"], e["probability"], e["model_version"]) for e in signed] == [
        ("done", 0.9, "test-1")
    ]
    services.case_reanalyse(case=case, user=admin_user)
    image = case.images.get()
    later = FakePredictor(result=FakeResult(probability=0.2, label="NORMAL", model_version="v2"))
    services.inference_run(image_id=image.pk, token="later", predictor_loader=lambda: later)
    assert Case.objects.get(pk=case.pk).status == Case.Status.REPORTED
    page = client_for(radiologist).get(f"/cases/{case.pk}/").content.decode()
    assert "Result the report was signed against:" in page and "model test-1" in page
    assert "Later result, after the report" in page and "model v2" in page
    api = client_for(radiologist).get(f"/api/v1/cases/{case.pk}/").json()
    assert api["review"]["ai_results"][0]["model_version"] == "test-1"


def test_an_unchanged_result_is_not_labelled_later(radiologist, client_for):
    case = factories.awaiting_review_case(claimed_by=radiologist)
    services.review_sign(
        case=case, author=radiologist, agrees_with_ai=True, finding="pneumonia", report="RLL."
    )
    page = client_for(radiologist).get(f"/cases/{case.pk}/").content.decode()
    assert "Later result" not in page and "signed against" not in page
