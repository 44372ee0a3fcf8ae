"""The outbox of findings for the PACS: which results and signed reports are due (pulled
from the clinical record by a periodic sweep: the clinical app never calls up here), the
claim of one object by one worker, and the record of every attempt with its backoff."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone
from pydicom.uid import generate_uid

from diagnosis import selectors
from diagnosis import services as diagnosis_services
from dicomnet.models import OutboundObject, SendAttempt
from dicomnet.objects import new_uid

# A 'sending' object untouched this long was left by a worker that died mid-send.
SENDING_LEASE = timedelta(minutes=5)
FIRST_RETRY_S = 2
# One series per kind of object in each study: the PACS shows ChestNet's output together.
SERIES_NUMBERS: dict[str, int] = {
    OutboundObject.Kind.FINDINGS: 9001,
    OutboundObject.Kind.OVERLAY: 9002,
    OutboundObject.Kind.REPORT: 9003,
}


def outbox_fill(*, now: datetime | None = None) -> int:
    """Make an outbound object for every finished result and signed report of a network
    case not yet in the outbox (the sweep then queues what is due); returns how many."""
    if not settings.CHESTNET_PACS:
        return 0
    now = now or timezone.now()
    since = now - timedelta(hours=settings.CHESTNET_PACS_LOOKBACK_H)
    wanted = _results_due(since) + _reports_due(since)
    known = set(
        OutboundObject.objects.filter(key__in=[o.key for o in wanted]).values_list("key", flat=True)
    )
    fresh = [o for o in wanted if o.key not in known]
    for outbound in fresh:
        outbound.next_attempt_at = now
    OutboundObject.objects.bulk_create(fresh, ignore_conflicts=True)
    return len(fresh)


def _results_due(since: datetime) -> list[OutboundObject]:
    objects = []
    for image_id, case_id, study, run, status, heatmap in selectors.network_results_since(
        since=since
    ):
        base = {"case_id": case_id, "image_id": image_id, "run": run}
        key = f"image-{image_id}-run-{run}"
        objects.append(_outbound(f"{key}-findings", OutboundObject.Kind.FINDINGS, study, base))
        if status == "done" and heatmap:
            objects.append(_outbound(f"{key}-overlay", OutboundObject.Kind.OVERLAY, study, base))
    return objects


def _reports_due(since: datetime) -> list[OutboundObject]:
    return [
        _outbound(
            f"review-{review_id}",
            OutboundObject.Kind.REPORT,
            study,
            {"case_id": case_id, "review_id": review_id, "run": version},
        )
        for review_id, case_id, study, version in selectors.network_reviews_since(since=since)
    ]


def _outbound(key: str, kind: str, study: str, fields: dict) -> OutboundObject:
    """UIDs chosen once and kept: every re-send is the same object to the PACS. Findings
    and overlays of a study share a series each; every report version has its own."""
    series = [study, kind, key] if kind == OutboundObject.Kind.REPORT else [study, kind]
    return OutboundObject(
        key=key,
        kind=kind,
        destination=settings.CHESTNET_PACS,
        study_instance_uid=study,
        series_instance_uid=generate_uid(entropy_srcs=["chestnet-series", *series]),
        sop_instance_uid=new_uid(),
        series_number=SERIES_NUMBERS[kind],
        **fields,
    )


def outbound_due(*, now: datetime | None = None) -> list[int]:
    """Objects waiting for their next attempt, and those a dead worker left 'sending'."""
    if not settings.CHESTNET_PACS:
        return []  # nowhere to send: they wait, and are not queued for nothing
    now = now or timezone.now()
    due = Q(status=OutboundObject.Status.PENDING, next_attempt_at__lte=now) | Q(
        status=OutboundObject.Status.SENDING, claimed_at__lt=now - SENDING_LEASE
    )
    return list(OutboundObject.objects.filter(due).values_list("pk", flat=True)[:500])


def outbound_claim(*, outbound_id: int, now: datetime | None = None) -> OutboundObject | None:
    """Take one object to send: at most one worker holds it (conditional update)."""
    now = now or timezone.now()
    claimable = Q(status=OutboundObject.Status.PENDING, next_attempt_at__lte=now) | Q(
        status=OutboundObject.Status.SENDING, claimed_at__lt=now - SENDING_LEASE
    )
    taken = OutboundObject.objects.filter(claimable, pk=outbound_id).update(
        status=OutboundObject.Status.SENDING,
        claimed_at=now,
        attempts=F("attempts") + 1,
        destination=settings.CHESTNET_PACS,  # where this attempt goes (it may have changed)
    )
    return OutboundObject.objects.get(pk=outbound_id) if taken else None


@transaction.atomic
def outbound_sent(*, outbound: OutboundObject, started_at: datetime, detail: str) -> None:
    now = timezone.now()
    OutboundObject.objects.filter(pk=outbound.pk).update(
        status=OutboundObject.Status.SENT, sent_at=now, last_error=""
    )
    SendAttempt.objects.create(
        outbound=outbound, started_at=started_at, outcome=SendAttempt.Outcome.SENT, detail=detail
    )
    _case_delivery_note(outbound.case_id)


@transaction.atomic
def outbound_failed(
    *, outbound: OutboundObject, started_at: datetime, error: str
) -> datetime | None:
    """Record the failure and when to try again: 2 s, doubling, at most
    CHESTNET_PACS_RETRY_MAX_S; after CHESTNET_PACS_MAX_ATTEMPTS tries the object is failed
    (None): its case says so until an admin's retry gets it through."""
    SendAttempt.objects.create(
        outbound=outbound,
        started_at=started_at,
        outcome=SendAttempt.Outcome.FAILED,
        detail=error[:300],
    )
    if outbound.attempts >= settings.CHESTNET_PACS_MAX_ATTEMPTS:
        OutboundObject.objects.filter(pk=outbound.pk).update(
            status=OutboundObject.Status.FAILED, last_error=error[:300]
        )
        _case_delivery_note(outbound.case_id)
        return None
    delay = min(
        settings.CHESTNET_PACS_RETRY_MAX_S, FIRST_RETRY_S * 2 ** min(outbound.attempts - 1, 20)
    )
    retry_at = timezone.now() + timedelta(seconds=delay)
    OutboundObject.objects.filter(pk=outbound.pk).update(
        status=OutboundObject.Status.PENDING, next_attempt_at=retry_at, last_error=error[:300]
    )
    return retry_at


@transaction.atomic
def outbound_retry(*, outbound_ids: list[int], user) -> int:
    """An admin sends failed objects again, now, with a fresh count of tries (audited on
    each object's case); returns how many."""
    failed = list(
        OutboundObject.objects.filter(pk__in=outbound_ids, status=OutboundObject.Status.FAILED)
    )
    OutboundObject.objects.filter(pk__in=[o.pk for o in failed]).update(
        status=OutboundObject.Status.PENDING, attempts=0, next_attempt_at=timezone.now()
    )
    for outbound in failed:
        diagnosis_services.case_pacs_retry_audit(
            case_id=outbound.case_id, user=user, what=str(outbound.get_kind_display())
        )
        _case_delivery_note(outbound.case_id)
    return len(failed)


def _case_delivery_note(case_id: int | None) -> None:
    """The case's note of what could not be sent to the PACS, from its failed objects."""
    if case_id is None:
        return
    kinds = (
        OutboundObject.objects.filter(case_id=case_id, status=OutboundObject.Status.FAILED)
        .values_list("kind", flat=True)
        .distinct()
    )
    labels = sorted(str(OutboundObject.Kind(kind).label) for kind in kinds)
    diagnosis_services.case_pacs_failure_set(case_id=case_id, failure="; ".join(labels))


def outbox_health() -> dict[str, int]:
    """For /healthz: objects that failed for good, and those waiting to be sent."""
    counts = dict(
        OutboundObject.objects.filter(
            status__in=[OutboundObject.Status.FAILED, OutboundObject.Status.PENDING]
        )
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    return {
        "failed": counts.get(OutboundObject.Status.FAILED, 0),
        "pending": counts.get(OutboundObject.Status.PENDING, 0),
    }


def outbound_supersede(*, outbound: OutboundObject) -> None:
    """The result it carried was replaced before it went out; the new one has its own."""
    OutboundObject.objects.filter(pk=outbound.pk).update(status=OutboundObject.Status.SUPERSEDED)


def reports_before(outbound: OutboundObject) -> list[OutboundObject]:
    """The earlier versions of a report SR (an amendment names what it replaces)."""
    if outbound.case_id is None:
        return []
    earlier = OutboundObject.objects.filter(
        kind=OutboundObject.Kind.REPORT, case_id=outbound.case_id, run__lt=outbound.run
    )
    return list(earlier.order_by("run"))


def is_own_object(sop_instance_uid: str) -> bool:
    """Whether an instance is one ChestNet sent (a PACS forwarding a whole study back):
    it is acknowledged and not analysed as a radiograph."""
    return bool(sop_instance_uid) and (
        OutboundObject.objects.filter(sop_instance_uid=sop_instance_uid).exists()
    )
