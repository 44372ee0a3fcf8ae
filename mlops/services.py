"""Web-side writes of model operations, called by the admin pages and the commands: datasets,
curation, splits, export, the feedback target, and queueing imports, training runs and
evaluations. The work itself runs in a worker (mlops.execute)."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.base import File
from django.db import transaction
from django.utils import timezone

from chestnet_site.errors import ServiceError
from chestnet_site.queue import enqueue_on_commit
from diagnosis import selectors as clinical
from ml.config import ARCHS, MIN_WIDTH, ModelConfig, TrainConfig
from ml.data import MIN_TRAIN_PER_CLASS, MIN_VALIDATION_PER_CLASS, Record, patient_split
from ml.deidentify import deidentify_dicom
from ml.preprocessing import ImageError, image_format
from mlops import selectors
from mlops.models import (
    Dataset,
    DatasetImage,
    Evaluation,
    Event,
    ImportJob,
    Label,
    LabelChange,
    SiteCalibration,
    Split,
    TrainingRun,
)
from registry.models import ModelVersion

logger = logging.getLogger(__name__)

# Published by name (mlops.tasks imports the worker side, which imports these services).
IMPORT_TASK = "mlops.tasks.dataset_import_task"
TRAINING_TASK = "mlops.tasks.training_run_task"
EVALUATION_TASK = "mlops.tasks.evaluation_run_task"
# The statuses every job model shares (their Status.QUEUED, RUNNING and FAILED).
UNFINISHED = ("queued", "running")
FAILED = "failed"
Job = TrainingRun | Evaluation | SiteCalibration


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
    """Reports signed from now on flow into this dataset (and into no other): the feedback
    pull (mlops.execute.feedback) copies those signed after the latest one today."""
    Dataset.objects.filter(is_feedback_target=True).exclude(pk=dataset.pk).update(
        is_feedback_target=False
    )
    Dataset.objects.filter(pk=dataset.pk, is_feedback_target=False).update(
        is_feedback_target=True, feedback_after_review=clinical.review_latest_id()
    )
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
        enqueue_on_commit(
            IMPORT_TASK,
            job.pk,
            on_unavailable=lambda: ImportJob.objects.filter(
                pk=job.pk, status=ImportJob.Status.QUEUED
            ).update(
                status=ImportJob.Status.FAILED, error="The task queue is unavailable; try again."
            ),
        )
    return job


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
    return selectors.dataset_balance(dataset=dataset)


# --- copies leaving the clinical record ------------------------------------------------


def deidentified_copy(data: bytes) -> bytes:
    """What a dataset holds of a file, and what an export writes: DICOM with the PS3.15
    Basic Profile applied (ml.deidentify; keyed by CHESTNET_DEID_SALT, so the same file
    always gives the same bytes and a copy of a copy is unchanged), PNG and JPEG as they
    are. Raises ImageError for a DICOM file that cannot be de-identified."""
    if image_format(data) != "dicom":
        return data
    return deidentify_dicom(data, salt=settings.CHESTNET_DEID_SALT)


def dataset_export(*, dataset: Dataset, user) -> Path:
    """A zip (re-importable: split/LABEL/file) with MANIFEST.csv; the caller deletes it.
    Every DICOM file is de-identified again on the way out (files stored before imports
    de-identified them included); one that cannot be is left out, which the event says."""
    handle = tempfile.NamedTemporaryFile(prefix="dataset-", suffix=".zip", delete=False)
    manifest = io.StringIO()
    writer = csv.writer(manifest)
    writer.writerow(["path", "label", "patient", "sha256", "split", "source", "excluded"])
    left_out = 0
    with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
        for image in dataset.images.order_by("pk").iterator():
            left_out += not _export_image(archive, writer, image)
        archive.writestr("MANIFEST.csv", manifest.getvalue())
    handle.close()
    note = f" ({left_out} DICOM file(s) left out: not de-identifiable)" if left_out else ""
    event_record(actor=user, action="exported", detail=dataset.name + note, dataset=dataset)
    return Path(handle.name)


def _export_image(archive: zipfile.ZipFile, writer, image: DatasetImage) -> bool:
    folder = f"{image.split}/" if image.split else ""
    suffix = {"dicom": "dcm", "png": "png"}.get(image.format, "jpeg")
    path = f"{folder}{image.label}/{image.pk:06d}-{image.patient}.{suffix}"
    if image.excluded:
        path = f"excluded/{path}"
    with image.file.open("rb") as source:
        try:
            payload = deidentified_copy(source.read())
        except ImageError:
            logger.warning("Dataset image %s left out of the export: not de-identifiable", image.pk)
            return False
    archive.writestr(path, payload)
    digest = hashlib.sha256(payload).hexdigest()  # of the file in the zip, as re-imported
    row = [image.label, image.patient, digest, image.split, image.source, int(image.excluded)]
    writer.writerow([path, *row])
    return True


# --- training runs ---------------------------------------------------------------------

# What the admin's form starts from: ml.config's defaults, so the web side and `python -m ml
# train` agree (imported from a TensorFlow-free module, never copied).
RUN_DEFAULTS: dict[str, Any] = {
    "epochs": TrainConfig.epochs,
    "arch": ModelConfig.arch,
    "image_size": ModelConfig.image_size,
    "width": ModelConfig.width,
    "stages": ModelConfig.stages,
    "seed": TrainConfig.seed,
}
RUN_LIMITS = {
    "epochs": (1, 500),
    "image_size": (32, 512),
    "width": (MIN_WIDTH, 256),
    "stages": (1, 6),
}
MIN_PER_CLASS = {Split.TRAIN: MIN_TRAIN_PER_CLASS, Split.VALIDATION: MIN_VALIDATION_PER_CLASS}


def run_config(**given: Any) -> dict[str, Any]:
    config = {**RUN_DEFAULTS, **{k: v for k, v in given.items() if v not in (None, "")}}
    if config["arch"] not in ARCHS:
        raise ServiceError(f"Unknown architecture {config['arch']!r}; choose {', '.join(ARCHS)}.")
    for key, (low, high) in RUN_LIMITS.items():
        config[key] = int(config[key])
        if not low <= config[key] <= high:
            raise ServiceError(f"{key.replace('_', ' ')} must be between {low} and {high}.")
    config["seed"] = int(config["seed"])
    return config


def trainable_problems(dataset: Dataset) -> list[str]:
    balance = selectors.dataset_balance(dataset=dataset)
    problems = []
    for split, minimum in MIN_PER_CLASS.items():
        for label in Label.values:
            count = balance[split][label]
            if count < minimum:
                problems.append(
                    f"The {split} split has {count} {label} image(s); at least {minimum} are needed"
                    " (import more images or assign splits)."
                )
    return problems


def training_run_start(*, dataset: Dataset, user, **options: Any) -> TrainingRun:
    """Refuse a dataset that cannot train (one class, too few images), else queue a run."""
    config = run_config(**options)
    problems = trainable_problems(dataset)
    if problems:
        raise ServiceError(" ".join(problems))
    with transaction.atomic():
        run = TrainingRun.objects.create(dataset=dataset, config=config, created_by=user)
        event_record(
            actor=user, action="run_queued", detail=f"run {run.pk}: {config}", dataset=dataset
        )
        job_enqueue(
            TRAINING_TASK,
            TrainingRun,
            run.pk,
            unavailable="The task queue is unavailable; start the run again.",
        )
    return run


def training_run_cancel(*, run: TrainingRun, user) -> TrainingRun:
    """A queued run is cancelled at once; a running one stops after the current batch."""
    with transaction.atomic():
        TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
            status=TrainingRun.Status.CANCELLED, finished_at=timezone.now(), cancel_requested=True
        )
        TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
            cancel_requested=True
        )
        event_record(
            actor=user, action="run_cancelled", detail=f"run {run.pk}", dataset=run.dataset
        )
    run.refresh_from_db()
    return run


def training_run_finish(run_id: int, status: str, *, error: str = "") -> None:
    """End a run that has not ended yet (queued or running) with this status."""
    job_end(TrainingRun, run_id, status=status, error=error)


# --- evaluations -----------------------------------------------------------------------


def evaluation_start(*, version: ModelVersion, dataset: Dataset, user) -> Evaluation:
    items = selectors.test_items(dataset=dataset)
    if not items:
        raise ServiceError(f"The dataset {dataset.name!r} has no test split; assign splits first.")
    with transaction.atomic():
        evaluation = Evaluation.objects.create(
            version=version, dataset=dataset, items_sha256=selectors.items_digest(items)
        )
        event_record(
            actor=user,
            action="evaluation_queued",
            detail=f"{version.version} on {dataset.name}",
            dataset=dataset,
        )
        job_enqueue(
            EVALUATION_TASK, Evaluation, evaluation.pk, unavailable="The task queue is unavailable."
        )
    return evaluation


def evaluation_fail(evaluation_id: int, *, reason: str) -> None:
    """Fail an evaluation that has not ended yet."""
    job_end(Evaluation, evaluation_id, status=Evaluation.Status.FAILED, error=reason)


# --- jobs: training runs, evaluations, site calibrations (mlops.calibration) ------------


def job_enqueue(task: str, model: type[Job], job_id: int, *, unavailable: str) -> None:
    """Publish `task` for the job once the transaction commits; with the task queue
    unavailable, the job fails at once with `unavailable` as its error."""
    enqueue_on_commit(
        task,
        job_id,
        on_unavailable=lambda: job_end(model, job_id, status=FAILED, error=unavailable),
    )


def job_end(model: type[Job], job_id: int, *, status: str, error: str = "") -> None:
    """End a job that has not ended yet (queued or running) with `status` and `error` (cut
    to 1000 characters), and the time it finished where the model keeps one."""
    fields: dict[str, Any] = {"status": status, "error": error[:1000]}
    if any(field.name == "finished_at" for field in model._meta.concrete_fields):
        fields["finished_at"] = timezone.now()
    model._default_manager.filter(pk=job_id, status__in=UNFINISHED).update(**fields)
