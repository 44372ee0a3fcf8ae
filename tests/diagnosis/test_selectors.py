from __future__ import annotations

import pytest
from django.http import Http404

from diagnosis import selectors, services
from tests.support import factories

pytestmark = pytest.mark.django_db


def test_clinician_lists_only_own_cases(clinician, clinician2):
    mine = factories.CaseFactory(owner=clinician)
    factories.CaseFactory(owner=clinician2)
    assert list(selectors.case_list_for(user=clinician)) == [mine]


def test_radiologist_and_admin_list_all_cases(radiologist, admin_user, clinician, clinician2):
    factories.CaseFactory(owner=clinician)
    factories.CaseFactory(owner=clinician2)
    assert selectors.case_list_for(user=radiologist).count() == 2
    assert selectors.case_list_for(user=admin_user).count() == 2


def test_case_get_for_user_hides_other_clinicians_cases(clinician, clinician2):
    case = factories.CaseFactory(owner=clinician2)
    with pytest.raises(Http404):
        selectors.case_get_for_user(user=clinician, case_id=case.pk)


def test_worklist_orders_urgent_then_probability_then_waiting_time(radiologist):
    routine_high = factories.awaiting_review_case(probability=0.95)
    urgent_low = factories.awaiting_review_case(probability=0.10, urgency="urgent")
    urgent_high = factories.awaiting_review_case(probability=0.90, urgency="urgent")
    routine_low_old = factories.awaiting_review_case(probability=0.20)
    routine_low_new = factories.awaiting_review_case(probability=0.20)
    factories.CaseFactory()  # still queued: not on the worklist
    order = list(selectors.worklist_for(user=radiologist))
    assert order == [urgent_high, urgent_low, routine_high, routine_low_old, routine_low_new]


def test_worklist_filters(radiologist, radiologist2):
    flagged = factories.awaiting_review_case(probability=0.9, urgency="urgent")
    normal = factories.awaiting_review_case(probability=0.1)
    services.case_claim(case=normal, user=radiologist2)
    assert list(selectors.worklist_for(user=radiologist, flagged=True)) == [flagged]
    assert list(selectors.worklist_for(user=radiologist, urgency="routine")) == [normal]
    assert list(selectors.worklist_for(user=radiologist, claim="unclaimed")) == [flagged]
    assert list(selectors.worklist_for(user=radiologist2, claim="mine")) == [normal]


def test_worklist_excludes_reported_cases(radiologist):
    case = factories.awaiting_review_case(claimed_by=radiologist)
    services.review_sign(
        case=case, author=radiologist, agrees_with_ai=True, finding="pneumonia", report="ok"
    )
    assert list(selectors.worklist_for(user=radiologist)) == []
