"""The analysis in the worker: claiming images for a batch, running the model over them,
rendering each result's preview and heatmap from the pixels it read, and marking failed
the images a task still holds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from chestnet_site.faults import TRANSIENT
from diagnosis.models import Case, Image
from diagnosis.services.case_status import cases_refresh
from diagnosis.services.inference_queue import PROCESSING_LEASE
from diagnosis.services.results import Analysed, Preview, analyses_store
from ml.outcome import Refusal
from ml.overlay import heatmap_png, heatmap_size
from ml.preprocessing import Acquisition, ImageError, acquisition, preview_jpeg

logger = logging.getLogger(__name__)


def images_claim(*, image_id: int, token: str, extra: int) -> list[Image]:
    """Take an image for analysis, and up to `extra` more queued images for the same batch
    when the queue is deep; returns the images (with their cases) this task now holds. Each
    image is claimed on its own (its attempts counted, its lease started) under the task's
    token: a second delivery of the same task takes the same images again, any other task
    only once the lease of a dead worker expired. The queued images' own tasks later find
    them taken."""
    now = timezone.now()
    claimable = (
        Q(status=Image.Status.QUEUED)
        | Q(status=Image.Status.PROCESSING, claim_token=token)
        | Q(status=Image.Status.PROCESSING, claimed_at__lt=now - PROCESSING_LEASE)
    )
    redelivered = Q(status=Image.Status.PROCESSING, claim_token=token)  # its batch, again
    queued = Q(status=Image.Status.QUEUED) if extra else Q(pk__in=[])
    # Most tasks of a deep queue find their image taken by an earlier batch and nothing
    # left: one read says so, without the write transaction.
    if not Image.objects.filter((claimable & Q(pk=image_id)) | redelivered | queued).exists():
        return []
    with transaction.atomic():
        ids = list(
            Image.objects.filter((claimable & Q(pk=image_id)) | redelivered).values_list(
                "pk", flat=True
            )
        )
        more = extra - len(set(ids) - {image_id})
        if more > 0:
            waiting = (
                Image.objects.select_for_update(skip_locked=True)
                .filter(status=Image.Status.QUEUED)
                .exclude(pk__in=[*ids, image_id])
                .order_by("enqueued_at", "pk")
                .values_list("pk", flat=True)
            )
            ids += waiting[:more]
        if not ids:
            return []
        Image.objects.filter(claimable, pk__in=ids).update(
            status=Image.Status.PROCESSING,
            claimed_at=now,
            claim_token=token,
            attempts=F("attempts") + 1,
            error="",
            refusal_reason="",
            refusal_message="",
            refusal_model_version="",
        )
        held = list(
            Image.objects.select_related("case")
            .filter(pk__in=ids, status=Image.Status.PROCESSING, claim_token=token)
            .order_by("pk")
        )
        # An image in analysis makes its case 'processing' (a reported case stays so).
        Case.objects.filter(pk__in={image.case_id for image in held}).exclude(
            status__in=[Case.Status.PROCESSING, Case.Status.REPORTED]
        ).update(status=Case.Status.PROCESSING)
    return held


def inference_run(*, image_id: int, token: str, predictor_loader: Callable[[], Any]) -> str:
    """Analyse the task's image, with up to CHESTNET_INFERENCE_BATCH - 1 more queued images
    as one batch through the model when the queue is deep. Returns what happened to the
    task's own image, for logs."""
    started = time.perf_counter()
    extra = max(0, settings.CHESTNET_INFERENCE_BATCH - 1)
    images = images_claim(image_id=image_id, token=token, extra=extra)
    if not images:
        return "skipped"
    ids = [image.pk for image in images]
    # An original that cannot be read is that image's failure; the others go on.
    outcomes: dict[int, Any] = {image.pk: _read(image) for image in images}
    readable = [image for image in images if isinstance(outcomes[image.pk], bytes)]
    predicted = _predict_batch(
        predictor_loader,
        [outcomes[image.pk] for image in readable],
        ages=[image.case.age for image in readable],
    )
    facts = {image.pk: acquisition(outcomes[image.pk]) for image in readable}
    outcomes.update(zip([image.pk for image in readable], predicted, strict=True))
    results = [
        _analysed(
            image, outcomes[image.pk], started=started, batch=len(images), facts=facts.get(image.pk)
        )
        for image in images
    ]
    stored = analyses_store(token=token, results=results)
    mine = next((r for r in results if isinstance(r, Analysed) and r.image_id == image_id), None)
    if image_id not in ids:
        return f"skipped (analysed {len(stored)} queued images)"
    if mine is None:
        return "failed"
    if image_id not in stored:
        return "skipped"
    return mine.outcome_name + (f" (batch of {len(images)})" if len(images) > 1 else "")


def _read(image: Image) -> bytes | Exception:
    """The stored original; a file that is gone fails its own image, not the batch. A store
    that is down is a transient fault: the task is retried, with its whole batch."""
    try:
        with image.original.open("rb") as handle:
            return handle.read()
    except TRANSIENT:
        raise
    except Exception as exc:
        logger.exception("The original of image %s cannot be read", image.pk)
        return exc


def _predict_batch(
    predictor_loader: Callable[[], Any], datas: list[bytes], *, ages: list[int | None]
) -> list[Any]:
    """One pass of the model over the batch. If the batch as a whole fails, each image
    goes through alone, so one bad file cannot fail the others."""
    predictor = predictor_loader()
    if len(datas) > 1:
        try:
            return list(predictor.predict_batch(datas, heatmap=True, ages=ages))
        except Exception:
            logger.exception("A batch of %s images failed; analysing them one by one", len(datas))
    return [_predict_one(predictor, data, age) for data, age in zip(datas, ages, strict=True)]


def _predict_one(predictor: Any, data: bytes, age_years: int | None) -> Any:
    try:
        return predictor.predict(data, heatmap=True, age_years=age_years)
    except ImageError as exc:
        # The predictor returns unreadable input as a Refusal; one that still raises (the
        # earlier contract) means the same, and must not turn a result into a failure.
        return Refusal(reason="unreadable", message=str(exc))
    except Exception as exc:
        logger.exception("Inference of one image failed")
        return exc


def _analysed(
    image: Image, outcome: Any, *, started: float, batch: int, facts: Acquisition | None = None
) -> Analysed | Exception:
    """The preview and heatmap of one outcome, from the pixels the model read: the file is
    decoded once. An unreadable file has neither."""
    if isinstance(outcome, Exception):
        return outcome
    try:
        pixels = getattr(outcome, "image", None)
        preview = _preview(pixels) if pixels is not None else None
        kept = bool(image.preview)
        if outcome.refused:
            return Analysed(image.pk, outcome, preview, has_preview=kept, acquisition=facts)
        heatmap = None
        if preview is not None and outcome.heatmap is not None:
            heatmap = heatmap_png(outcome.heatmap, size=heatmap_size(preview.size))
        timings = {**outcome.timings, "worker_total": (time.perf_counter() - started) * 1000}
        if batch > 1:
            timings["batch"] = batch
        return Analysed(
            image.pk, outcome, preview, heatmap, timings, has_preview=kept, acquisition=facts
        )
    except Exception as exc:
        logger.exception("Rendering the result of image %s failed", image.pk)
        return exc


def _preview(pixels: Any) -> Preview:
    data, size = preview_jpeg(pixels)
    return Preview(data=data, size=size)


@transaction.atomic
def images_fail(*, token: str, reason: str) -> int:
    """Mark failed every image a task still holds (its retries are spent, or it was
    stopped): each can be retried on its own."""
    held = Image.objects.select_for_update().filter(
        status=Image.Status.PROCESSING, claim_token=token
    )
    case_ids = set(held.values_list("case_id", flat=True))
    updated = held.update(status=Image.Status.FAILED, error=reason[:500])
    cases_refresh(case_ids=case_ids)
    return updated
