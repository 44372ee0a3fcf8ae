"""The radiologist feedback loop: a periodic task pulls signed reports (first reports and
amendments) from the clinical record and copies their images, de-identified, into the
feedback dataset, labelled with the radiologist's finding: a DICOM image as DICOM with the
PS3.15 Basic Profile applied (full bit depth for training), a PNG or JPEG as a fresh PNG of
its pixels. The clinical app knows nothing of it: signing never waits for, or fails
because of, this copy."""

from __future__ import annotations

import hashlib
import hmac
import logging

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction

from diagnosis import selectors as clinical
from ml.preprocessing import ImageError, decode_image, image_format, preview_png
from mlops.execute.imports import THUMB_SIDE, VIEW_SIDE
from mlops.models import Dataset, DatasetImage, Label
from mlops.services import deidentified_copy, event_record, image_relabel

logger = logging.getLogger(__name__)

FEEDBACK_LABELS = {"normal": Label.NORMAL, "pneumonia": Label.PNEUMONIA}
PULL_BATCH = 100


def feedback_pull(*, limit: int = PULL_BATCH) -> int:
    """Copy the reports signed since the last pull into the feedback dataset, oldest
    first. Returns how many images were added, relabelled or excluded."""
    target = Dataset.objects.filter(is_feedback_target=True).first()
    if target is None:
        return 0
    changed = 0
    for review in clinical.reviews_signed_after(
        review_id=target.feedback_after_review, limit=limit
    ):
        with transaction.atomic():
            # One pull at a time per report: the row lock orders concurrent pulls.
            locked = Dataset.objects.select_for_update().get(pk=target.pk)
            if not locked.is_feedback_target or locked.feedback_after_review >= review.pk:
                continue
            try:
                with transaction.atomic():
                    changed += feedback_from_review(target=locked, review=review)
            except Exception:
                logger.exception("Feedback copy of review %s failed; skipped", review.pk)
            Dataset.objects.filter(pk=locked.pk).update(feedback_after_review=review.pk)
    return changed


def feedback_from_review(*, target: Dataset, review) -> int:
    """Copy a signed case's images labelled with the radiologist's finding; other findings
    keep them out (and exclude earlier copies). Returns how many images changed."""
    label = FEEDBACK_LABELS.get(review.finding)
    existing = DatasetImage.objects.filter(dataset=target, feedback_case=review.case)
    if label is None:
        return existing.filter(excluded=False).update(
            excluded=True, exclusion_reason=f"report version {review.version}: {review.finding}"
        )
    return sum(
        _feedback_image(target=target, review=review, image=image, label=label)
        for image in clinical.images_analysable(case=review.case)
    )


def feedback_patient_key(case) -> str:
    """Groups a patient's images for the split without storing who the patient is."""
    identity = case.patient_id or f"case-{case.pk}"
    digest = hmac.new(str(settings.SECRET_KEY).encode(), identity.encode(), hashlib.sha256)
    return "fb-" + digest.hexdigest()[:24]


def anonymised_png(data: bytes) -> bytes:
    """Pixels only: a fresh PNG from the decoded image, so no DICOM header, EXIF or text
    chunk (patient names, ids, dates) can survive into the dataset."""
    image = decode_image(data)
    return preview_png(image, max_side=max(image.shape))


def feedback_copy(data: bytes) -> tuple[bytes, str]:
    """The bytes the feedback dataset stores of a clinical image, and their format."""
    if image_format(data) == "dicom":
        return deidentified_copy(data), "dicom"
    return anonymised_png(data), "png"


def _feedback_image(*, target: Dataset, review, image, label: str) -> int:
    with image.original.open("rb") as handle:
        try:
            copy, fmt = feedback_copy(handle.read())
            decoded = decode_image(copy)
        except ImageError:
            return 0
    digest = hashlib.sha256(copy).hexdigest()
    current = DatasetImage.objects.filter(dataset=target, sha256=digest).first()
    if current is not None:
        if current.label == label:
            return 0
        image_relabel(image=current, label=label, user=review.author)
        return 1
    _feedback_row(target, review, image, label, copy=copy, fmt=fmt, digest=digest, decoded=decoded)
    event_record(
        actor=review.author,
        action="feedback_added",
        detail=f"case {review.case_id} image {image.pk}: {label}",
        dataset=target,
    )
    return 1


def _feedback_row(target, review, image, label, *, copy, fmt, digest, decoded) -> DatasetImage:
    suffix = "dcm" if fmt == "dicom" else "png"
    row = DatasetImage(
        dataset=target,
        original_name=f"feedback/case-{review.case_id}-image-{image.pk}.{suffix}",
        format=fmt,
        sha256=digest,
        label=label,
        source=DatasetImage.Source.FEEDBACK,
        patient=feedback_patient_key(review.case),
        feedback_case=review.case,
    )
    row.file.save("image", ContentFile(copy), save=False)
    row.thumbnail.save("thumb", ContentFile(preview_png(decoded, max_side=THUMB_SIDE)), save=False)
    if fmt == "dicom":  # the admin pages show a PNG of it (DatasetImage.view)
        row.view.save("view", ContentFile(preview_png(decoded, max_side=VIEW_SIDE)), save=False)
    row.save()
    return row
