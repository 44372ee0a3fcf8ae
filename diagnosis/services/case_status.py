"""A case's status, highest AI probability, AI flag and time it became ready for review,
derived from its images."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from chestnet_site.rows import rows_update
from diagnosis.models import Case, Image, Prediction


@transaction.atomic
def case_refresh_status(*, case_id: int) -> Case:
    """Derive the case status (and worklist keys) from its images; reported is final."""
    cases_refresh(case_ids={case_id})
    return Case.objects.get(pk=case_id)


def cases_refresh(*, case_ids: Iterable[int]) -> None:
    """`case_refresh_status` for several cases in four queries, whatever their number,
    inside a transaction its caller holds."""
    cases = list(
        Case.objects.select_for_update()
        .filter(pk__in=set(case_ids))
        .exclude(status=Case.Status.REPORTED)
        .order_by("pk")
    )
    if not cases:
        return
    statuses: dict[int, list[str]] = {case.pk: [] for case in cases}
    for case_id, status in Image.objects.filter(case__in=cases).values_list("case_id", "status"):
        statuses[case_id].append(status)
    # Only analysed images speak for the AI: a refused image adds no probability or flag.
    probabilities: dict[int, list[tuple[float, str]]] = {case.pk: [] for case in cases}
    for case_id, probability, label in Prediction.objects.filter(
        image__case__in=cases, image__status=Image.Status.DONE
    ).values_list("image__case_id", "probability", "label"):
        probabilities[case_id].append((probability, label))
    now = timezone.now()
    for case in cases:
        found = probabilities[case.pk]
        case.status = _case_status_from(statuses[case.pk])
        case.max_probability = max((p for p, _ in found), default=None)
        case.ai_flagged = any(label == "PNEUMONIA" for _, label in found)
        if case.status == Case.Status.AWAITING_REVIEW and case.ready_at is None:
            case.ready_at = now
    rows_update(cases, ["status", "max_probability", "ai_flagged", "ready_at"])


def _case_status_from(statuses: list[str]) -> str:
    """Done and refused images are both finished: a case of only those awaits review."""
    if any(s == Image.Status.PROCESSING for s in statuses):
        return Case.Status.PROCESSING
    if any(s == Image.Status.QUEUED for s in statuses):
        done = any(s != Image.Status.QUEUED for s in statuses)
        return Case.Status.PROCESSING if done else Case.Status.QUEUED
    if any(s == Image.Status.FAILED for s in statuses):
        return Case.Status.FAILED
    return Case.Status.AWAITING_REVIEW
