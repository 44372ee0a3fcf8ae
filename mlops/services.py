"""Writes on datasets: imports, relabels, exclusions, split assignment, export and the
radiologist feedback loop; plus re-running a case with the active model version."""

from __future__ import annotations

import csv
import functools
import hashlib
import hmac
import io
import logging
import tempfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.db import transaction
from django.utils import timezone

from ml.data import Record, patient_split
from ml.preprocessing import ImageError, decode_image, image_format, preview_png
from mlops.models import Dataset, DatasetImage, Event, ImportJob, Label, LabelChange, Split
from mlops.sources import ImportRefused, Planned, folder_entries, plan_import, zip_entries

logger = logging.getLogger(__name__)

THUMB_SIDE = 192
PROGRESS_EVERY = 10


class ServiceError(Exception):
    """A rule refused the action; str() is safe to show the admin."""


def event_record(*, actor, action: str, detail: str = "", dataset: Dataset | None = None) -> Event:
    return Event.objects.create(actor=actor, action=action, detail=detail[:300], dataset=dataset)


# --- datasets --------------------------------------------------------------------------


def dataset_create(*, name: str, description: str = "", user) -> Dataset:
    name = name.strip()
    if not name:
        raise ServiceError("Give the dataset a name.")
    if Dataset.objects.filter(name=name).exists():
        raise ServiceError(f"A dataset named {name!r} exists already.")
    with transaction.atomic():
        dataset = Dataset.objects.create(name=name, description=description, created_by=user)
        event_record(actor=user, action="dataset_created", detail=name, dataset=dataset)
    return dataset


@transaction.atomic
def dataset_set_feedback_target(*, dataset: Dataset, user) -> Dataset:
    """Signed reports flow into this dataset from now on (and into no other)."""
    Dataset.objects.filter(is_feedback_target=True).exclude(pk=dataset.pk).update(
        is_feedback_target=False
    )
    Dataset.objects.filter(pk=dataset.pk).update(is_feedback_target=True)
    event_record(actor=user, action="feedback_target", detail=dataset.name, dataset=dataset)
    dataset.refresh_from_db()
    return dataset


# --- imports ---------------------------------------------------------------------------


def import_job_create(*, dataset: Dataset, upload, user) -> ImportJob:
    """Store the uploaded zip and queue its import; the worker does the heavy part."""
    if upload.size > settings.CHESTNET_IMPORT_MAX_MB * 1024 * 1024:
        raise ServiceError(
            f"The zip is larger than {settings.CHESTNET_IMPORT_MAX_MB} MB; import it on the "
            "server with `python manage.py import_dataset`."
        )
    if not zipfile.is_zipfile(upload):
        raise ServiceError("The file is not a zip archive.")
    upload.seek(0)
    with transaction.atomic():
        job = ImportJob(dataset=dataset, source_name=Path(upload.name).name[:255], created_by=user)
        job.upload.save("upload.zip", File(upload), save=False)
        job.save()
        event_record(actor=user, action="import_queued", detail=job.source_name, dataset=dataset)
        transaction.on_commit(lambda: import_job_enqueue(job_id=job.pk))
    return job


def import_job_enqueue(*, job_id: int) -> None:
    from mlops.tasks import dataset_import_task

    try:
        dataset_import_task.apply_async(args=[job_id])
    except Exception:  # kombu raises many types when the broker is unreachable
        logger.warning("Broker unavailable; import job %s not queued", job_id)
        ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
            status=ImportJob.Status.FAILED, error="The task queue is unavailable; try again."
        )


def import_job_run(*, job_id: int) -> str:
    """Worker side of a browser import: claim the job, import all or nothing, record."""
    if not ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING
    ):
        return "skipped"
    job = ImportJob.objects.select_related("dataset", "created_by").get(pk=job_id)
    try:
        with job.upload.open("rb") as handle, zipfile.ZipFile(handle) as archive:
            summary = _import(
                job=job, entries=zip_entries(archive), source=DatasetImage.Source.UPLOAD
            )
    except (ImportRefused, zipfile.BadZipFile) as exc:
        _job_fail(job, str(exc))
        return "failed"
    except Exception:
        logger.exception("Import job %s failed", job_id)
        _job_fail(job, "The import failed because of an internal error.")
        return "failed"
    finally:
        job.upload.delete(save=False)
    ImportJob.objects.filter(pk=job_id).update(
        status=ImportJob.Status.DONE, summary=summary, finished_at=timezone.now(), upload=""
    )
    return "done"


def import_job_lost(job_id: int, *, reason: str) -> None:
    """The worker lost the import's process; rows were never created (one transaction)."""
    ImportJob.objects.filter(
        pk=job_id, status__in=[ImportJob.Status.QUEUED, ImportJob.Status.RUNNING]
    ).update(status=ImportJob.Status.FAILED, error=reason[:1000], finished_at=timezone.now())


def _job_fail(job: ImportJob, reason: str) -> None:
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.FAILED, error=reason, finished_at=timezone.now(), upload=""
    )
    event_record(actor=job.created_by, action="import_failed", detail=reason, dataset=job.dataset)


def dataset_import_path(*, dataset: Dataset, path: Path, user=None) -> dict[str, Any]:
    """Import a server folder or zip in this process (the management command)."""
    job = ImportJob.objects.create(
        dataset=dataset,
        source_name=str(path)[:255],
        created_by=user,
        status=ImportJob.Status.RUNNING,
    )
    try:
        if path.is_dir():
            summary = _import(
                job=job, entries=folder_entries(path), source=DatasetImage.Source.FOLDER
            )
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                summary = _import(
                    job=job, entries=zip_entries(archive), source=DatasetImage.Source.FOLDER
                )
        else:
            raise ImportRefused([f"{path} is neither a folder nor a zip archive."])
    except ImportRefused as exc:
        _job_fail(job, str(exc))
        raise
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.DONE, summary=summary, finished_at=timezone.now()
    )
    return summary


def _import(*, job: ImportJob, entries, source: str) -> dict[str, Any]:
    """Validate and store every file, then create all rows in one transaction; on any
    problem delete what was stored and raise ImportRefused (nothing is imported)."""
    plan = plan_import(entries)
    ImportJob.objects.filter(pk=job.pk).update(total=len(plan.items), processed=0)
    known = set(DatasetImage.objects.filter(dataset=job.dataset).values_list("sha256", flat=True))
    pending: list[DatasetImage] = []
    skipped = list(plan.skipped)
    try:
        problems = _store_all(job, plan.items, source, known, pending, skipped)
        if problems:
            raise ImportRefused(problems)
        created = _create_rows(job, pending, skipped)
    except BaseException:
        _delete_files(pending)
        raise
    summary = _summary(created, skipped)
    event_record(
        actor=job.created_by,
        action="import_done",
        detail=f"{job.source_name}: {summary['imported']} imported, {summary['skipped']} skipped",
        dataset=job.dataset,
    )
    return summary


def _store_all(job, items: list[Planned], source, known: set[str], pending, skipped) -> list[str]:
    problems: list[str] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(items, start=1):
        data = item.read()
        digest = hashlib.sha256(data).hexdigest()
        if digest in known:
            skipped.append((item.name, "already in the dataset (same content)"))
        elif digest in seen:
            skipped.append((item.name, f"same content as {seen[digest]}"))
        else:
            seen[digest] = item.name
            try:
                pending.append(_stored_image(job, item, source, data, digest))
            except ImageError as exc:
                problems.append(f"{item.name}: {exc}")
        if index % PROGRESS_EVERY == 0 or index == len(items):
            ImportJob.objects.filter(pk=job.pk).update(processed=index)
        if len(problems) >= 50:
            break
    return problems


def _stored_image(job, item: Planned, source: str, data: bytes, digest: str) -> DatasetImage:
    decoded = decode_image(data)
    image = DatasetImage(
        dataset=job.dataset,
        original_name=item.name[-255:],
        format=image_format(data),
        sha256=digest,
        label=item.label,
        split=item.split,
        source=source,
        patient=item.patient,
        import_job=job,
    )
    image.file.save("image", ContentFile(data), save=False)
    image.thumbnail.save(
        "thumb", ContentFile(preview_png(decoded, max_side=THUMB_SIDE)), save=False
    )
    return image


def _create_rows(job, pending: list[DatasetImage], skipped) -> list[DatasetImage]:
    with transaction.atomic():
        # Lock the dataset: a concurrent import may have added the same content meanwhile.
        Dataset.objects.select_for_update().get(pk=job.dataset_id)
        present = set(
            DatasetImage.objects.filter(
                dataset_id=job.dataset_id, sha256__in=[p.sha256 for p in pending]
            ).values_list("sha256", flat=True)
        )
        fresh = [p for p in pending if p.sha256 not in present]
        late = [p for p in pending if p.sha256 in present]
        skipped += [(p.original_name, "already in the dataset (same content)") for p in late]
        DatasetImage.objects.bulk_create(fresh, batch_size=500)
    _delete_files(late)
    return fresh


def _delete_files(images: list[DatasetImage]) -> None:
    for image in images:
        for field in (image.file, image.thumbnail):
            if field.name:
                field.storage.delete(field.name)


def _summary(created: list[DatasetImage], skipped: list[tuple[str, str]]) -> dict[str, Any]:
    labels = Counter(i.label for i in created)
    splits = Counter(i.split or "unassigned" for i in created)
    return {
        "imported": len(created),
        "skipped": len(skipped),
        "by_label": dict(labels),
        "by_split": dict(splits),
        "skipped_files": [{"name": n, "reason": r} for n, r in skipped[:500]],
        "skipped_reasons": dict(Counter(r for _, r in skipped)),
    }


# --- curation --------------------------------------------------------------------------


@transaction.atomic
def image_relabel(*, image: DatasetImage, label: str, user) -> DatasetImage:
    if label not in Label.values:
        raise ServiceError(f"Unknown label {label!r}.")
    locked = DatasetImage.objects.select_for_update().get(pk=image.pk)
    if locked.label == label:
        return locked
    LabelChange.objects.create(image=locked, actor=user, old_label=locked.label, new_label=label)
    event_record(
        actor=user,
        action="relabelled",
        detail=f"image {locked.pk}: {locked.label} -> {label}",
        dataset=locked.dataset,
    )
    locked.label = label
    locked.save(update_fields=["label"])
    return locked


@transaction.atomic
def image_set_excluded(
    *, image: DatasetImage, excluded: bool, reason: str = "", user
) -> DatasetImage:
    locked = DatasetImage.objects.select_for_update().get(pk=image.pk)
    locked.excluded = excluded
    locked.exclusion_reason = reason.strip()[:200] if excluded else ""
    locked.save(update_fields=["excluded", "exclusion_reason"])
    event_record(
        actor=user,
        action="excluded" if excluded else "included",
        detail=f"image {locked.pk}" + (f": {locked.exclusion_reason}" if excluded else ""),
        dataset=locked.dataset,
    )
    return locked


@transaction.atomic
def dataset_assign_splits(
    *, dataset: Dataset, validation_fraction: float, test_fraction: float, seed: int, user
) -> dict[str, dict[str, int]]:
    """Patient-level, label-stratified train/validation/test assignment of every included
    image, reproducible from the seed. Returns the class balance per split."""
    if not (0 < validation_fraction < 1 and 0 <= test_fraction < 1):
        raise ServiceError("Fractions must be between 0 and 1.")
    if validation_fraction + test_fraction >= 0.9:
        raise ServiceError("Leave at least 10% of the images for training.")
    Dataset.objects.select_for_update().get(pk=dataset.pk)
    images = list(
        dataset.images.filter(excluded=False).values_list("pk", "label", "patient", "sha256")
    )
    records = [
        Record(path=str(pk), label=label, patient=patient, sha256=sha)
        for pk, label, patient, sha in images
    ]
    rest = patient_split(records, val_fraction=test_fraction, seed=seed) if test_fraction else None
    test = rest.validation if rest else []
    remaining = rest.train if rest else records
    share = validation_fraction / (1 - test_fraction)
    split = patient_split(remaining, val_fraction=share, seed=seed + 1)
    for name, part in (("train", split.train), ("validation", split.validation), ("test", test)):
        DatasetImage.objects.filter(pk__in=[int(r.path) for r in part]).update(split=name)
    dataset.images.filter(excluded=True).update(split=Split.UNASSIGNED)
    Dataset.objects.filter(pk=dataset.pk).update(split_seed=seed, split_at=timezone.now())
    event_record(
        actor=user,
        action="split_assigned",
        detail=f"seed {seed}, validation {validation_fraction:.2f}, test {test_fraction:.2f}",
        dataset=dataset,
    )
    from mlops.selectors import dataset_balance

    return dataset_balance(dataset=dataset)


def dataset_export(*, dataset: Dataset, user) -> Path:
    """A zip (re-importable: split/LABEL/file) with MANIFEST.csv; the caller deletes it."""
    handle = tempfile.NamedTemporaryFile(prefix="dataset-", suffix=".zip", delete=False)
    manifest = io.StringIO()
    writer = csv.writer(manifest)
    writer.writerow(["path", "label", "patient", "sha256", "split", "source", "excluded"])
    with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
        for image in dataset.images.order_by("pk").iterator():
            folder = f"{image.split}/" if image.split else ""
            suffix = {"dicom": "dcm", "png": "png"}.get(image.format, "jpeg")
            path = f"{folder}{image.label}/{image.pk:06d}-{image.patient}.{suffix}"
            if image.excluded:
                path = f"excluded/{path}"
            with image.file.open("rb") as source:
                archive.writestr(path, source.read())
            writer.writerow(
                [
                    path,
                    image.label,
                    image.patient,
                    image.sha256,
                    image.split,
                    image.source,
                    int(image.excluded),
                ]
            )
        archive.writestr("MANIFEST.csv", manifest.getvalue())
    handle.close()
    event_record(actor=user, action="exported", detail=dataset.name, dataset=dataset)
    return Path(handle.name)


# --- feedback loop ---------------------------------------------------------------------

FEEDBACK_LABELS = {"normal": Label.NORMAL, "pneumonia": Label.PNEUMONIA}


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


def feedback_from_review(*, review_id: int) -> int:
    """Copy a signed case's images into the feedback dataset, labelled with the
    radiologist's finding; other findings keep them out (and exclude earlier copies).
    Returns how many images were added or relabelled."""
    from diagnosis.models import Image, Review

    target = Dataset.objects.filter(is_feedback_target=True).first()
    if target is None:
        return 0
    review = Review.objects.select_related("case", "author").get(pk=review_id)
    label = FEEDBACK_LABELS.get(review.finding)
    existing = DatasetImage.objects.filter(dataset=target, feedback_case=review.case)
    if label is None:
        changed = existing.filter(excluded=False).update(
            excluded=True, exclusion_reason=f"report version {review.version}: {review.finding}"
        )
        return changed
    changed = 0
    # Images the AI refused (not a chest radiograph, outside the population it was made for)
    # must not become training data under the case's finding.
    for image in review.case.images.exclude(status=Image.Status.REFUSED):
        changed += _feedback_image(target=target, review=review, image=image, label=label)
    return changed


def _feedback_image(*, target: Dataset, review, image, label: str) -> int:
    with image.original.open("rb") as handle:
        try:
            png = anonymised_png(handle.read())
        except ImageError:
            return 0
    digest = hashlib.sha256(png).hexdigest()
    with transaction.atomic():
        current = (
            DatasetImage.objects.select_for_update().filter(dataset=target, sha256=digest).first()
        )
        if current is not None:
            if current.label != label:
                image_relabel(image=current, label=label, user=review.author)
                return 1
            return 0
        row = DatasetImage(
            dataset=target,
            original_name=f"feedback/case-{review.case_id}-image-{image.pk}.png",
            format="png",
            sha256=digest,
            label=label,
            source=DatasetImage.Source.FEEDBACK,
            patient=feedback_patient_key(review.case),
            feedback_case=review.case,
        )
        row.file.save("image", ContentFile(png), save=False)
        row.thumbnail.save(
            "thumb", ContentFile(preview_png(decode_image(png), max_side=THUMB_SIDE)), save=False
        )
        row.save()
        event_record(
            actor=review.author,
            action="feedback_added",
            detail=f"case {review.case_id} image {image.pk}: {label}",
            dataset=target,
        )
    return 1


def feedback_after_signing(*, review) -> None:
    """Called by diagnosis' review services inside their transaction: the copy happens once
    the signature is committed, and never makes signing fail."""
    review_id = review.pk

    def run() -> None:
        try:
            feedback_from_review(review_id=review_id)
        except Exception:
            logger.exception("Feedback copy of review %s failed", review_id)

    transaction.on_commit(run)


# --- re-running a case -----------------------------------------------------------------


def case_rerun(*, case, user) -> int:
    """Analyse every image of a case again with the active version. The current
    predictions are kept as PriorPrediction rows (a refusal leaves no row: it is only
    replaced); returns how many images were queued."""
    from diagnosis.models import AuditEvent, Image, Prediction
    from diagnosis.services import audit_record, case_refresh_status, image_enqueue
    from mlops.models import PriorPrediction

    queued: list[int] = []
    with transaction.atomic():
        # A refused image is a result too: the active version may analyse it, or refuse again.
        finished = [Image.Status.DONE, Image.Status.REFUSED]
        images = list(Image.objects.select_for_update().filter(case=case, status__in=finished))
        for image in images:
            prediction = Prediction.objects.filter(image=image).first()
            if prediction is not None:
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
            Image.objects.filter(pk=image.pk).update(
                status=Image.Status.QUEUED,
                claim_token="",
                error="",
                refusal_reason="",
                refusal_message="",
                enqueued_at=timezone.now(),
            )
            queued.append(image.pk)
        if not queued:
            raise ServiceError("No analysed image to re-run.")
        case_refresh_status(case_id=case.pk)
        audit_record(
            actor=user,
            action=AuditEvent.Action.RETRIED,
            case=case,
            detail=f"re-run with the active model: {len(queued)} image(s)",
        )
        for image_id in queued:
            transaction.on_commit(functools.partial(image_enqueue, image_id=image_id))
    return len(queued)
