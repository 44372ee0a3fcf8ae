"""Reasons are words (issue 21, part 5): an amendment, reassignment or override reason, and
an alert's acknowledgement note, needs at least a few visible letters once the text is in
Unicode's compatibility form; invisible and control characters are stripped. The forms and
the API answer 400 with the message; the services refuse too (for the commands)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from chestnet_site.errors import ServiceError
from chestnet_site.text import WordsRequired, require_words, visible
from diagnosis import services
from diagnosis.models import AuditEvent, Case
from tests.support import factories, reviews

pytestmark = pytest.mark.django_db

NOT_WORDS = {
    "zero-width space": "\u200b",
    "zero-width run": "\u200b\u200c\u200d\u2060\ufeff",
    "direction marks": "\u200e\u200f\u202e",
    "control characters": "\x01\x02\x7f\x1b",
    "whitespace": "  \t \u00a0\u3000 ",
    "a letter and a dot": "a.",
    "punctuation": "... !!! ---",
    "hangul fillers": "\u3164\u3164\u3164\u3164",
    "blank braille": "\u2800\u2800\u2800",
    "two letters hidden among invisibles": "o\u200bk\u200b\u200b",
}
BAD = pytest.mark.parametrize("reason", NOT_WORDS.values(), ids=NOT_WORDS.keys())


@pytest.fixture
def signed(radiologist):
    return reviews.signed_case(radiologist)


# --- the rule ----------------------------------------------------------------------------


@BAD
def test_text_without_enough_letters_is_refused(reason):
    with pytest.raises(WordsRequired, match="the reason in words"):
        require_words(reason, field="the reason")


def test_a_reason_is_kept_as_it_is_seen():
    assert require_words(" Typo in\u200b the\tlaterality. ", field="x") == "Typo in the laterality."
    assert require_words("ｌｅｆｔ ｓｉｄｅ", field="x") == "left side"  # full-width letters
    assert require_words("Ärztin: fi\ufb01x", field="x") == "Ärztin: fifix"  # NFKC ligature
    assert visible("\u200b\x00") == ""


def test_the_refusal_is_both_a_service_error_and_a_validation_error():
    with pytest.raises(WordsRequired) as refused:
        require_words("a.", field="the reason for the amendment")
    assert isinstance(refused.value, ServiceError)
    assert str(refused.value).startswith("Give the reason for the amendment in words")
    assert refused.value.messages == [str(refused.value)]


# --- amendment: the page, the API, the service ---------------------------------------------


def _amend(reason: str) -> dict[str, str]:
    return {
        "agrees_with_ai": "no",
        "finding": "normal",
        "report": "Normal.",
        "amendment_reason": reason,
    }


@BAD
def test_the_review_page_refuses_an_amendment_without_words(
    signed, radiologist, client_for, reason
):
    response = client_for(radiologist).post(
        reverse("case_review", args=[signed.pk]), _amend(reason)
    )
    assert response.status_code == 400
    assert "Give the reason for the amendment in words" in response.content.decode()
    assert signed.reviews.count() == 1


@BAD
def test_the_api_refuses_an_amendment_without_words(signed, radiologist, api_client_for, reason):
    payload = {**_amend(reason), "agrees_with_ai": False}
    response = api_client_for(radiologist).post(
        f"/api/v1/cases/{signed.pk}/review/", payload, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert "reason for the amendment in words" in body["detail"]
    assert "amendment_reason" in body["errors"]
    assert signed.reviews.count() == 1


def test_the_api_refuses_an_amendment_without_any_reason(signed, radiologist, api_client_for):
    payload = {"agrees_with_ai": False, "finding": "normal", "report": "Normal."}
    response = api_client_for(radiologist).post(
        f"/api/v1/cases/{signed.pk}/review/", payload, format="json"
    )
    assert response.status_code == 400 and signed.reviews.count() == 1


@BAD
def test_the_service_refuses_an_amendment_without_words(signed, radiologist, reason):
    form = {"agrees_with_ai": False, "finding": "normal", "reason": reason}
    with pytest.raises(ServiceError, match="reason for the amendment in words"):
        reviews.submit(signed, radiologist, report="Normal.", **form)


def test_a_real_amendment_reason_still_works_and_is_stored_visible(
    signed, radiologist, client_for, api_client_for
):
    page = client_for(radiologist).post(
        reverse("case_review", args=[signed.pk]), _amend("Second\u200b look: no consolidation.")
    )
    assert page.status_code == 302
    assert signed.reviews.get(version=2).amendment_reason == "Second look: no consolidation."
    payload = {**_amend("Typo in the report."), "agrees_with_ai": False}
    api = api_client_for(radiologist).post(
        f"/api/v1/cases/{signed.pk}/review/", payload, format="json"
    )
    assert api.status_code == 201 and signed.reviews.count() == 3


def test_a_first_signature_needs_no_reason(radiologist, api_client_for):
    case = factories.awaiting_review_case(claimed_by=radiologist)
    payload = {"agrees_with_ai": True, "finding": "normal", "report": "Clear."}
    response = api_client_for(radiologist).post(
        f"/api/v1/cases/{case.pk}/review/", payload, format="json"
    )
    assert response.status_code == 201


# --- reassignment: the form and the service ---------------------------------------------


@BAD
def test_the_reassignment_form_refuses_a_reason_without_words(
    signed, admin_user, radiologist, radiologist2, client_for, reason
):
    url = reverse("report_reassign", args=[signed.pk])
    response = client_for(admin_user).post(url, {"radiologist": radiologist2.pk, "reason": reason})
    assert response.status_code == 400
    assert "Give the reason for the reassignment in words" in response.content.decode()
    assert Case.objects.get(pk=signed.pk).report_owner == radiologist
    assert not AuditEvent.objects.filter(action="reassigned").exists()


@BAD
def test_the_reassignment_service_refuses_a_reason_without_words(
    signed, admin_user, radiologist2, reason
):
    with pytest.raises(ServiceError, match="reason for the reassignment in words"):
        services.report_reassign(case=signed, to=radiologist2, reason=reason, by=admin_user)


def test_a_real_reassignment_reason_still_works(signed, admin_user, radiologist2, client_for):
    url = reverse("report_reassign", args=[signed.pk])
    reason = "Dr Radiologist left\u200b the hospital."
    response = client_for(admin_user).post(url, {"radiologist": radiologist2.pk, "reason": reason})
    assert response.status_code == 302
    assert Case.objects.get(pk=signed.pk).report_owner == radiologist2
    event = AuditEvent.objects.get(action="reassigned")
    assert event.detail.endswith(": Dr Radiologist left the hospital.")


# --- the monitoring alert's acknowledgement note --------------------------------------------


@BAD
def test_an_alert_acknowledgement_needs_words(admin_user, reason):
    from monitoring import alerts
    from monitoring.models import Alert

    alert = Alert.objects.create(
        kind="sensitivity",
        model_version="v1",
        value=0.7,
        limit=0.9,
        window=50,
        message="low",
        checked_at=timezone.now(),
    )
    with pytest.raises(alerts.AcknowledgeRefused, match="in words"):
        alerts.alert_acknowledge(alert_id=alert.pk, user=admin_user, note=reason)
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    done = alerts.alert_acknowledge(alert_id=alert.pk, user=admin_user, note="Checking\u200b it.")
    assert done.acknowledgement == "Checking it."
