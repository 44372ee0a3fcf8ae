"""The authorization and integrity matrix: every role (anonymous, two clinicians, two
radiologists, an administrator) sends GET and POST to every URL of the site, the API and
the Django admin of the clinical record, with a body that would rewrite a report if
anything let it. None may be a server error, and afterwards the signed report, its case
and the audit trail are all still there as they were. (New report versions may appear:
only the report's owner may add them, and those are amendments, not edits.)"""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts import roles
from diagnosis import services
from diagnosis.models import AuditEvent, Case, Review
from tests.support import factories

pytestmark = pytest.mark.django_db

# Routes that end the session itself, or are not pages (static files).
SKIPPED = ("logout", "static")
HOSTILE = {
    "post": "yes",
    "report": "Rewritten.",
    "finding": "normal",
    "agrees_with_ai": "no",
    "amendment_reason": "Because.",
    "patient_id": "SOMEONE-ELSE",
    "owner": "1",
    "urgency": "routine",
    "radiologist": "1",
    "reason": "x",
}


def _patterns(resolver=None, prefix: str = "") -> list[tuple[str, URLPattern]]:
    resolver = resolver or get_resolver()
    found = []
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if "admin/" in route and not route.endswith("admin/"):
                continue
            found += _patterns(entry, route)
        elif isinstance(entry, URLPattern):
            found.append((route, entry))
    return found


def _concrete(route: str, ids: dict[str, str]) -> str | None:
    import re

    path = route.replace("^", "").replace("$", "")
    for name, value in ids.items():
        path = re.sub(rf"<(?:\w+:)?{name}>", value, path)
    return None if "<" in path or "(" in path or any(s in path for s in SKIPPED) else "/" + path


@pytest.fixture
def record(radiologist):
    case = factories.awaiting_review_case(claimed_by=radiologist, patient_id="MRN-5")
    services.review_sign(
        case=case, author=radiologist, agrees_with_ai=True, finding="pneumonia", report="RLL."
    )
    return Case.objects.get(pk=case.pk)


def _urls(record) -> list[str]:
    image = record.images.get()
    ids = {
        "case_id": str(record.pk),
        "image_id": str(image.pk),
        "kind": "original",
        "activation_id": "1",
        "dataset_id": "1",
        "job_id": "1",
        "run_id": "1",
        "version_id": "1",
        "evaluation_id": "1",
        "plot": "roc",
    }
    urls = sorted({url for route, _ in _patterns() if (url := _concrete(route, ids))})
    review = record.reviews.get()
    event = AuditEvent.objects.filter(case=record).first()
    for model, pk in (("review", review.pk), ("case", record.pk), ("auditevent", event.pk)):
        for view in ("change", "delete", "history"):
            urls.append(reverse(f"admin:diagnosis_{model}_{view}", args=[pk]))
        urls.append(reverse(f"admin:diagnosis_{model}_changelist"))
    return urls


def test_no_role_and_no_url_rewrites_or_removes_the_record(
    client, clinician, clinician2, radiologist, radiologist2, admin_user, record
):
    review = record.reviews.get()
    events_before = list(AuditEvent.objects.order_by("pk").values_list("pk", "action", "detail"))
    people = [None, clinician, clinician2, radiologist, radiologist2, admin_user]
    urls = _urls(record)
    assert len(urls) > 40
    sent = 0
    for person in people:
        client.logout()
        if person is not None:
            client.force_login(person)
        for url in urls:
            for method in (client.get, client.post):
                response = method(url, HOSTILE)
                assert response.status_code < 500, (url, person, response.status_code)
                sent += 1
    assert sent == len(people) * len(urls) * 2
    kept = Review.objects.get(pk=review.pk)
    assert (kept.version, kept.report, kept.finding, kept.author) == (
        1,
        "RLL.",
        "pneumonia",
        radiologist,
    )
    assert set(Review.objects.filter(case=record).values_list("author", flat=True)) == {
        radiologist.pk
    }
    case = Case.objects.get(pk=record.pk)
    assert (case.patient_id, case.status, case.report_owner) == ("MRN-5", "reported", radiologist)
    events_after = list(AuditEvent.objects.order_by("pk").values_list("pk", "action", "detail"))
    assert events_after[: len(events_before)] == events_before
    assert roles.is_admin(admin_user)
