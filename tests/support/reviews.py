"""A radiologist's report written through the clinical service in one call, for the tests of
what a signature or an amendment leads to (the record, the audit trail, the feedback pull,
the PACS): each gives the fields that matter to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def submit(
    case: Any, author: Any, *, report: str, service: Callable[..., Any] | None = None, **form: Any
) -> Any:
    """`case`'s report by `author`, through `service`: by default
    `diagnosis.services.review_submit`, which signs, or amends a signed report, as the views
    do. `form` is the rest of the review form: agrees_with_ai (True unless given), finding
    ("pneumonia" unless given) and, for an amendment, reason."""
    from diagnosis import services

    fields = {"agrees_with_ai": True, "finding": "pneumonia", **form}
    return (service or services.review_submit)(case=case, author=author, report=report, **fields)


def signed_case(radiologist: Any) -> Any:
    """A case analysed, claimed and signed by `radiologist` (pneumonia, "RLL."), read again."""
    from diagnosis import services
    from diagnosis.models import Case
    from tests.support import factories

    case = factories.awaiting_review_case(claimed_by=radiologist)
    submit(case, radiologist, report="RLL.", service=services.review_sign)
    return Case.objects.get(pk=case.pk)
