"""Storing a batch's results: predictions, refusals, previews and heatmaps, each image only
while its task still holds it; a result of a model version withdrawn meanwhile is queued
again instead of shown."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from chestnet_site.rows import rows_update
from diagnosis.models import AuditEvent, Case, Image, Prediction
from diagnosis.services.audit import audit_record
from diagnosis.services.case_status import cases_refresh
from diagnosis.services.files import delete_files, file_save
from diagnosis.services.inference_queue import image_enqueue_on_commit
from ml.outcome import Refusal
from ml.preprocessing import Acquisition

logger = logging.getLogger(__name__)


FAILED_GENERIC = "The analysis failed because of an internal error. Retry, or contact support."
FAILED_STORAGE_FULL = (
    "The analysis could not be stored: the image store is full. Retry once space is freed."
)


@dataclass(frozen=True)
class Preview:
    data: bytes  # JPEG
    size: tuple[int, int]  # (width, height)


@dataclass(frozen=True)
class Analysed:
    """What the worker made of one image, ready to store."""

    image_id: int
    outcome: Any  # a Prediction or a Refusal (ml.outcome)
    preview: Preview | None
    heatmap: bytes | None = None
    timings: dict[str, float] | None = None
    has_preview: bool = False  # the image keeps the preview it has (a re-analysis)
    acquisition: Acquisition | None = None  # the header's facts, for monitoring

    @property
    def outcome_name(self) -> str:
        return "refused" if self.outcome.refused else "done"


def analyses_store(*, token: str, results: Sequence[Analysed | Exception]) -> set[int]:
    """Store a batch's results: predictions, refusals, previews, and the status of each
    case once. An image is stored only while this task still holds it (a second delivery of
    the task stores nothing); an image whose analysis raised is marked failed. Returns the
    ids stored. The preview and heatmap files are written first, outside the transaction,
    so no row (and with SQLite, no database) stays locked while they upload; the files of
    results that are not recorded are deleted again."""
    files = _files_write(results)
    try:
        with transaction.atomic():
            stored = _analyses_store(token, results, files)
    except Exception:
        delete_files([name for written in files.values() for name in written.names()])
        raise
    delete_files(
        [
            name
            for image_id, written in files.items()
            if image_id not in stored
            for name in written.names()
        ]
    )
    return stored


@dataclass
class _Written:
    """What one result's files are called in storage, once written."""

    preview: str = ""
    heatmap: str = ""

    def names(self) -> list[str]:
        return [name for name in (self.preview, self.heatmap) if name]


def _files_write(results: Sequence[Analysed | Exception]) -> dict[int, _Written]:
    preview_field = Image._meta.get_field("preview")
    heatmap_field = Prediction._meta.get_field("heatmap")
    files: dict[int, _Written] = {}
    try:
        for result in results:
            if not isinstance(result, Analysed):
                continue
            written = files[result.image_id] = _Written()
            if result.preview is not None and not result.has_preview:
                written.preview = file_save(preview_field, "preview", result.preview.data)
            if result.heatmap is not None and not result.outcome.refused:
                written.heatmap = file_save(heatmap_field, "heatmap", result.heatmap)
    except Exception:
        delete_files([name for written in files.values() for name in written.names()])
        raise
    return files


def _analyses_store(
    token: str, results: Sequence[Analysed | Exception], files: dict[int, _Written]
) -> set[int]:
    # Before the images: a model switch locks the version rows first, then images.
    withdrawn = _withdrawn_versions(results)
    held = {
        image.pk: image
        for image in Image.objects.select_for_update().filter(
            claim_token=token, status=Image.Status.PROCESSING
        )
    }
    predictions, changed, again = [], [], []
    now = timezone.now()
    for result in results:
        if isinstance(result, Exception):
            continue
        image = held.get(result.image_id)
        if image is None:
            continue
        if str(result.outcome.model_version) in withdrawn:
            again.append(image)
            continue
        written = files[result.image_id]
        if written.preview and not image.preview:
            image.preview.name = written.preview
            image.preview_width, image.preview_height = result.preview.size  # type: ignore[union-attr]
        elif written.preview:  # another task stored one meanwhile: keep it, drop this one
            delete_files([written.preview])
        if result.acquisition is not None:
            _acquisition_apply(image, result.acquisition)
        if result.outcome.refused:
            _refusal_apply(image, result.outcome)
        else:
            predictions.append(_prediction(image, result, written.heatmap))
            image.status = Image.Status.DONE
        image.result_at = now
        changed.append(image)
    failed = set(held) - {image.pk for image in changed} - {image.pk for image in again}
    _withdrawn_requeue(again, withdrawn)
    Prediction.objects.bulk_create(predictions)
    fields = ["status", "result_at", "preview", "preview_width", "preview_height"]
    fields += ["refusal_reason", "refusal_message", "refusal_model_version", "error"]
    fields += ["modality", "manufacturer", "width", "height", "bits_stored", "view_position"]
    rows_update(changed, fields)
    if failed:
        Image.objects.filter(pk__in=failed).update(status=Image.Status.FAILED, error=FAILED_GENERIC)
    cases_refresh(case_ids={image.case_id for image in held.values()})
    return {image.pk for image in changed}


def _withdrawn_versions(results: Sequence[Analysed | Exception]) -> set[str]:
    """The registered versions among these results' that are no longer active. Their rows
    are locked: a switch that withdraws one either committed before (this store sees it
    and re-queues the image) or waits for this store to commit (and then re-queues the
    case with the other unreported results of the withdrawn version). A version the
    registry does not know (no registry yet: the shipped default) is served as it is."""
    from registry.models import ModelVersion

    versions = {
        str(result.outcome.model_version) for result in results if isinstance(result, Analysed)
    }
    if not versions:
        return set()
    rows = ModelVersion.objects.select_for_update().filter(version__in=versions).order_by("pk")
    return {version for version, active in rows.values_list("version", "is_active") if not active}


def _withdrawn_requeue(images: list[Image], withdrawn: set[str]) -> None:
    """Queue again images analysed by a version withdrawn while they were in analysis: the
    result is dropped (never shown), the attempt is not counted against the image."""
    if not images:
        return
    Image.objects.filter(pk__in=[image.pk for image in images]).update(
        status=Image.Status.QUEUED,
        claim_token="",
        result_at=None,
        enqueued_at=timezone.now(),
        attempts=F("attempts") - 1,
    )
    for image in images:
        image_enqueue_on_commit(image_id=image.pk)
    for case_id in sorted({image.case_id for image in images}):
        audit_record(
            actor=None,
            action=AuditEvent.Action.REANALYSED,
            case=Case(pk=case_id),
            detail=f"model {', '.join(sorted(withdrawn))} withdrawn during analysis: queued again",
        )
    logger.info("%s image(s) analysed by a withdrawn version queued again", len(images))


def _acquisition_apply(image: Image, facts: Acquisition) -> None:
    image.modality = facts.modality
    image.manufacturer = facts.manufacturer
    image.width = facts.width or None
    image.height = facts.height or None
    image.bits_stored = facts.bits_stored or None
    image.view_position = facts.view_position


def _refusal_apply(image: Image, refusal: Refusal) -> None:
    """Record that the model declined this input: a result, not a failure, so there is no
    prediction and nothing to retry, and the case still goes to a radiologist."""
    image.status = Image.Status.REFUSED
    image.refusal_reason = refusal.reason
    image.refusal_message = refusal.message[:2000]
    image.refusal_model_version = str(refusal.model_version)[:100]
    image.error = ""


def _prediction(image: Image, result: Analysed, heatmap: str) -> Prediction:
    outcome = result.outcome
    prediction = Prediction(
        image=image,
        probability=float(outcome.probability),
        label=str(outcome.label),
        threshold=float(outcome.threshold),
        model_version=str(outcome.model_version),
        uncertainty=None if outcome.uncertainty is None else float(outcome.uncertainty),
        warnings=[str(warning) for warning in outcome.warnings],
        timings={key: round(float(value), 2) for key, value in (result.timings or {}).items()},
    )
    prediction.heatmap.name = heatmap
    return prediction
