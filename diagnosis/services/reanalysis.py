"""Analysing again: retrying a failed image, re-running a case with the active model (the
replaced predictions kept as PriorPrediction rows), and re-running every unreported case of
a withdrawn version."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from chestnet_site.errors import ServiceError
from diagnosis.models import AuditEvent, Case, Image, Prediction, PriorPrediction
from diagnosis.services.audit import audit_record
from diagnosis.services.case_status import case_refresh_status
from diagnosis.services.inference_queue import image_enqueue_on_commit


def image_retry(*, image: Image, user) -> Image:
    with transaction.atomic():
        updated = Image.objects.filter(pk=image.pk, status=Image.Status.FAILED).update(
            status=Image.Status.QUEUED, error="", claim_token="", enqueued_at=timezone.now()
        )
        if not updated:
            raise ServiceError("Only a failed analysis can be retried.")
        case_refresh_status(case_id=image.case_id)
        audit_record(
            actor=user,
            action=AuditEvent.Action.RETRIED,
            case=image.case,
            detail=f"image {image.pk}",
        )
        image_enqueue_on_commit(image_id=image.pk)
    image.refresh_from_db()
    return image


def case_reanalyse(*, case: Case, user, reason: str = "re-run with the active model") -> int:
    """Analyse every finished image of a case again with the active model version. The
    current predictions are kept as PriorPrediction rows (a refusal leaves no row: it is
    only replaced); returns how many images were queued."""
    with transaction.atomic():
        # A refused image is a result too: the active version may analyse it, or refuse again.
        finished = [Image.Status.DONE, Image.Status.REFUSED]
        images = list(Image.objects.select_for_update().filter(case=case, status__in=finished))
        if not images:
            raise ServiceError("No analysed image to re-run.")
        for image in images:
            _prediction_supersede(image=image, user=user)
            Image.objects.filter(pk=image.pk).update(
                status=Image.Status.QUEUED,
                claim_token="",
                error="",
                refusal_reason="",
                refusal_message="",
                result_at=None,
                enqueued_at=timezone.now(),
            )
            image_enqueue_on_commit(image_id=image.pk)
        case_refresh_status(case_id=case.pk)
        audit_record(
            actor=user,
            action=AuditEvent.Action.REANALYSED,
            case=case,
            detail=f"{reason}: {len(images)} image(s)",
        )
    return len(images)


def reanalyse_unreported(*, model_version: str, user) -> int:
    """A model version was withdrawn: every case not yet reported that it analysed (or
    refused) goes through the active version again. Reported cases keep the result their
    report was signed against. Returns how many cases were queued."""
    analysed_by = Q(images__prediction__model_version=model_version) | Q(
        images__refusal_model_version=model_version, images__status=Image.Status.REFUSED
    )
    cases = Case.objects.filter(analysed_by).exclude(status=Case.Status.REPORTED).distinct()
    count = 0
    for case in cases:
        try:
            case_reanalyse(case=case, user=user, reason=f"model {model_version} withdrawn")
        except ServiceError:  # nothing finished to re-run (still queued or processing)
            continue
        count += 1
    return count


def _prediction_supersede(*, image: Image, user) -> None:
    prediction = Prediction.objects.filter(image=image).first()
    if prediction is None:
        return
    PriorPrediction.objects.create(
        image=image,
        probability=prediction.probability,
        label=prediction.label,
        threshold=prediction.threshold,
        model_version=prediction.model_version,
        heatmap=prediction.heatmap.name or "",
        timings=prediction.timings,
        predicted_at=prediction.created_at,
        superseded_by=user,
    )
    # The heatmap file now belongs to the prior row; delete only the row.
    Prediction.objects.filter(pk=prediction.pk).delete()
