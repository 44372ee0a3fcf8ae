"""The review page as a reading room, on the server's side: the patient's priors (same
Patient ID from the same issuer, earlier, only cases the reader may see), each a view of
that case in the audit trail; the case bar's AI result; the thumbnail strip with each
image's view and result, rendered again by the live poll."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from diagnosis import selectors, services
from diagnosis.models import AuditEvent, Case, Image
from tests.support import factories

pytestmark = pytest.mark.django_db


def _case(patient: str = "MRN-7", *, issuer: str = "", days_ago: int = 0, **kwargs) -> Case:
    return factories.awaiting_review_case(
        patient_id=patient,
        issuer_of_patient_id=issuer,
        study_at=timezone.now() - timedelta(days=days_ago),
        **kwargs,
    )


def test_priors_are_the_same_patient_from_the_same_issuer_earlier_newest_first(radiologist):
    current = _case(issuer="HOSP-A", days_ago=0)
    older = _case(issuer="HOSP-A", days_ago=30)
    old = _case(issuer="HOSP-A", days_ago=300)
    _case(issuer="HOSP-B", days_ago=10)  # the same number from another hospital
    _case(issuer="", days_ago=10)  # one without issuer: not known to be the same patient
    _case("MRN-8", issuer="HOSP-A", days_ago=10)  # another patient
    _case(issuer="HOSP-A", days_ago=-2)  # a later study
    priors = selectors.case_priors(user=radiologist, case=current)
    assert [prior.pk for prior in priors] == [older.pk, old.pk]


def test_without_issuer_priors_are_those_without_issuer_too(radiologist):
    current = _case(days_ago=0)
    same = _case(days_ago=5)
    _case(issuer="HOSP-A", days_ago=5)
    assert [p.pk for p in selectors.case_priors(user=radiologist, case=current)] == [same.pk]


def test_a_case_without_patient_id_has_no_priors(radiologist):
    current = _case("", days_ago=0)
    _case("", days_ago=5)
    assert selectors.case_priors(user=radiologist, case=current) == []


def test_same_study_time_orders_by_arrival(radiologist):
    at = timezone.now() - timedelta(days=1)
    first = factories.CaseFactory(patient_id="MRN-9", study_at=at)
    second = factories.CaseFactory(patient_id="MRN-9", study_at=at)
    second.refresh_from_db()
    assert [p.pk for p in selectors.case_priors(user=radiologist, case=second)] == [first.pk]
    first.refresh_from_db()
    assert selectors.case_priors(user=radiologist, case=first) == []


def test_priors_are_only_cases_the_user_may_see(clinician, clinician2):
    current = _case(owner=clinician, days_ago=0)
    mine = _case(owner=clinician, days_ago=20)
    _case(owner=clinician2, days_ago=10)
    assert [p.pk for p in selectors.case_priors(user=clinician, case=current)] == [mine.pk]


def test_the_review_page_lists_priors_with_finding_and_report_and_audits_each(
    client_for, radiologist
):
    current = _case(days_ago=0)
    prior = _case(days_ago=40, status=Case.Status.REPORTED)
    factories.ReviewFactory(case=prior, finding="pneumonia", report="Left lower lobe opacity.")
    response = client_for(radiologist).get(reverse("case_review", args=[current.pk]))
    page = response.content.decode()
    assert response.context["priors"] == [prior]
    assert f'data-prior-case="{prior.pk}"' in page
    assert "Left lower lobe opacity." in page and "Pneumonia" in page
    image = prior.images.get()
    assert f'data-open-prior="{image.pk}"' in page and f'data-prior-viewer="{image.pk}"' in page
    viewed = AuditEvent.objects.filter(action=AuditEvent.Action.VIEWED, case_ref=prior.pk)
    assert viewed.get().detail == f"prior of case {current.pk}"
    assert viewed.get().actor == radiologist
    # A reload within a few minutes is the same view.
    client_for(radiologist).get(reverse("case_review", args=[current.pk]))
    assert viewed.count() == 1


def test_no_priors_says_so(client_for, radiologist):
    current = _case(days_ago=0)
    page = client_for(radiologist).get(reverse("case_review", args=[current.pk])).content
    assert b"data-no-priors" in page
    assert not AuditEvent.objects.filter(detail__startswith="prior of case").exists()


def test_the_case_bar_gives_the_highest_result_and_what_was_not_analysed(client_for, radiologist):
    case = factories.CaseFactory(patient_id="MRN-BAR", age=3)
    factories.PredictionFactory(image__case=case, probability=0.31, label="NORMAL")
    factories.PredictionFactory(
        image__case=case, image__view_position="AP", probability=0.88, uncertainty=0.04
    )
    factories.ImageFactory(case=case, status=Image.Status.REFUSED, refusal_reason="not_chest")
    services.case_refresh_status(case_id=case.pk)
    response = client_for(radiologist).get(reverse("case_review", args=[case.pk]))
    ai = response.context["case_ai"]
    assert (ai.top.probability, ai.top_number, ai.analysed, ai.refused, ai.waiting) == (
        0.88,
        2,
        2,
        1,
        0,
    )
    page = response.content.decode()
    bar = page[page.index('id="case-ai"') : page.index("data-use-toggle")]
    assert "PNEUMONIA</strong> P 0.88 ± 0.04" in bar and "1 not analysed" in bar
    strip = page[page.index('id="rr-thumbs"') : page.index('id="rr-grid"')]
    assert strip.count("data-show-image=") == 3
    assert "AP" in strip and "view not in file" in strip
    assert "NORMAL 0.31" in strip and "not analysed" in strip


def test_the_live_poll_renders_each_thumbnail_and_the_case_bar(client_for, radiologist):
    case = factories.CaseFactory(patient_id="MRN-LIVE-BAR")
    image = factories.ImageFactory(case=case, status=Image.Status.PROCESSING)
    services.case_refresh_status(case_id=case.pk)
    client = client_for(radiologist)
    url = reverse("case_review_live", args=[case.pk])
    answer = client.get(url, {"since": ""}).json()
    assert "analysing" in answer["case_ai"]
    assert "analysing" in answer["images"][0]["thumb"]
    Image.objects.filter(pk=image.pk).update(status=Image.Status.DONE, result_at=timezone.now())
    factories.PredictionFactory(image=image, probability=0.77)
    services.case_refresh_status(case_id=case.pk)
    answer = client.get(url, {"since": answer["version"]}).json()
    assert answer["changed"]
    assert "P 0.77" in answer["case_ai"]
    thumb = answer["images"][0]["thumb"]
    assert thumb.startswith(f'<li data-thumb="{image.pk}">') and "PNEUMONIA 0.77" in thumb
