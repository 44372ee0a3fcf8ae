"""Worker side of dataset imports: a browser upload's job (claimed, all or nothing), and a
server folder or zip imported in this process (the `import_dataset` command). Both give
images without a split folder the default split when the dataset has none yet. A DICOM
file is stored de-identified (mlops.services.deidentified_copy): its file, checksum and
duplicate check are those of the de-identified bytes, which the same source always gives."""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from ml.preprocessing import ImageError, decode_image, image_format, preview_png
from mlops.models import Dataset, DatasetImage, ImportJob, Split
from mlops.services import dataset_assign_splits, deidentified_copy, event_record
from mlops.sources import ImportRefused, Planned, folder_entries, plan_import, zip_entries

logger = logging.getLogger(__name__)

THUMB_SIDE = 192
VIEW_SIDE = 1024
PROGRESS_EVERY = 10
# The split page's defaults (mlops.forms.SplitForm), given at import to images without a
# split folder: a plain NORMAL/ + PNEUMONIA/ import can be trained on at once.
IMPORT_SPLIT: dict[str, Any] = {"validation_fraction": 0.15, "test_fraction": 0.15, "seed": 1337}


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
        created, split = _create_rows(job, pending, skipped)
    except BaseException:
        _delete_files(pending)
        raise
    summary = {**_summary(job, created, skipped), **split}
    counts = f"{summary['imported']} imported, {summary['skipped']} skipped"
    event_record(
        actor=job.created_by,
        action="import_done",
        detail=f"{job.source_name}: {counts}{split_note(split)}",
        dataset=job.dataset,
    )
    return summary


def _store_all(job, items: list[Planned], source, known: set[str], pending, skipped) -> list[str]:
    problems: list[str] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(items, start=1):
        try:
            _store_item(job, item, source, known, seen, pending, skipped)
        except ImageError as exc:
            problems.append(f"{item.name}: {exc}")
        if index % PROGRESS_EVERY == 0 or index == len(items):
            ImportJob.objects.filter(pk=job.pk).update(processed=index)
        if len(problems) >= 50:
            break
    return problems


def _store_item(job, item: Planned, source, known: set[str], seen, pending, skipped) -> None:
    data = deidentified_copy(item.read())
    digest = hashlib.sha256(data).hexdigest()
    if digest in known:
        skipped.append((item.name, "already in the dataset (same content)"))
    elif digest in seen:
        skipped.append((item.name, f"same content as {seen[digest]}"))
    else:
        seen[digest] = item.name
        pending.append(_stored_image(job, item, source, data, digest))


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
    if image.format == "dicom":
        image.view.save("view", ContentFile(preview_png(decoded, max_side=VIEW_SIDE)), save=False)
    return image


def _create_rows(
    job, pending: list[DatasetImage], skipped
) -> tuple[list[DatasetImage], dict[str, Any]]:
    """Create the rows and, in the same transaction, the split they may need."""
    with transaction.atomic():
        # Lock the dataset: a concurrent import may have added the same content meanwhile.
        dataset = Dataset.objects.select_for_update().get(pk=job.dataset_id)
        present = set(
            DatasetImage.objects.filter(
                dataset_id=job.dataset_id, sha256__in=[p.sha256 for p in pending]
            ).values_list("sha256", flat=True)
        )
        fresh = [p for p in pending if p.sha256 not in present]
        late = [p for p in pending if p.sha256 in present]
        skipped += [(p.original_name, "already in the dataset (same content)") for p in late]
        DatasetImage.objects.bulk_create(fresh, batch_size=500)
        split = _split_if_none(dataset, fresh, user=job.created_by)
    _delete_files(late)
    return fresh, split


def _split_if_none(dataset: Dataset, fresh: list[DatasetImage], *, user) -> dict[str, Any]:
    """Images without a split folder get the seeded, patient-level, label-stratified split,
    unless the dataset has a split already (assigned, or from split folders): that one is
    kept, and the new images stay unassigned (out of training and evaluation) until the
    admin assigns splits again, which the summary says."""
    unsplit = sum(1 for image in fresh if image.split == Split.UNASSIGNED)
    if not unsplit:
        return {}
    has_split = dataset.images.exclude(split=Split.UNASSIGNED).exists()
    if dataset.split_seed is not None or has_split:
        return {"split_assigned": None, "left_unassigned": unsplit}
    dataset_assign_splits(dataset=dataset, user=user, **IMPORT_SPLIT)
    return {"split_assigned": dict(IMPORT_SPLIT)}


def split_note(split: dict[str, Any]) -> str:
    """What the import did about splits, in words (event trail, command output)."""
    if split.get("split_assigned"):
        return f"; split assigned (seed {split['split_assigned']['seed']})"
    if split.get("left_unassigned"):
        return f"; {split['left_unassigned']} without a split folder left unassigned"
    return ""


def _delete_files(images: list[DatasetImage]) -> None:
    for image in images:
        for field in (image.file, image.thumbnail, image.view):
            if field.name:
                field.storage.delete(field.name)


def _summary(job, created: list[DatasetImage], skipped: list[tuple[str, str]]) -> dict[str, Any]:
    labels = Counter(i.label for i in created)
    # Read back: the split assigned at import is in the rows, not in `created`.
    stored = DatasetImage.objects.filter(import_job=job).values_list("split", flat=True)
    splits = Counter(split or "unassigned" for split in stored)
    return {
        "imported": len(created),
        "skipped": len(skipped),
        "by_label": dict(labels),
        "by_split": dict(splits),
        "skipped_files": [{"name": n, "reason": r} for n, r in skipped[:500]],
        "skipped_reasons": dict(Counter(r for _, r in skipped)),
    }
