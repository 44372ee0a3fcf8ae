"""Labelled datasets, imports, training runs, evaluations and site calibrations of model
versions (the versions themselves live in the registry). Web-side writes happen in mlops.services,
worker-side ones in mlops.execute."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from chestnet_site.history import person_field
from chestnet_site.storage import RandomName

dataset_file_path = RandomName("datasets/{dataset_id}", ".bin")
dataset_thumb_path = RandomName("datasets/{dataset_id}/thumbs", ".png")
dataset_view_path = RandomName("datasets/{dataset_id}/views", ".png")
import_upload_path = RandomName("imports", ".zip")


class Label(models.TextChoices):
    NORMAL = "NORMAL", "Normal"
    PNEUMONIA = "PNEUMONIA", "Pneumonia"


class Split(models.TextChoices):
    UNASSIGNED = "", "Unassigned"
    TRAIN = "train", "Train"
    VALIDATION = "validation", "Validation"
    TEST = "test", "Test"


class JobStatus(models.TextChoices):
    """Where an import, an evaluation or a site calibration stands."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Job(models.Model):
    """Work a worker does when asked: what went wrong, if anything, and when it was asked
    for (the newest first)."""

    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]


def produced_version_field(*, related_name: str) -> models.OneToOneField:
    """The model version a piece of work produced (registered in the model registry); kept
    empty if that version is deleted."""
    return models.OneToOneField(
        "registry.ModelVersion",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name=related_name,
    )


class Dataset(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    # Signed radiologist reports flow into the one dataset with this flag: the feedback
    # pull copies those signed after the review with this id (mlops.execute.feedback).
    is_feedback_target = models.BooleanField(default=False)
    feedback_after_review = models.PositiveBigIntegerField(default=0)
    split_seed = models.IntegerField(null=True, blank=True)
    split_at = models.DateTimeField(null=True, blank=True)
    created_by = person_field()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_feedback_target"],
                condition=Q(is_feedback_target=True),
                name="mlops_one_feedback_dataset",
            )
        ]

    def __str__(self) -> str:
        return self.name


class DatasetImage(models.Model):
    class Source(models.TextChoices):
        UPLOAD = "upload", "Browser upload"
        FOLDER = "folder", "Server import"
        FEEDBACK = "feedback", "Radiologist feedback"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="images")
    file = models.FileField(upload_to=dataset_file_path)
    thumbnail = models.FileField(upload_to=dataset_thumb_path)
    # A browser-viewable copy of a DICOM file, made at import (PNG and JPEG are shown as
    # they are): the admin pages never decode pixels in the web process.
    view = models.FileField(upload_to=dataset_view_path, blank=True)
    original_name = models.CharField(max_length=255)
    format = models.CharField(max_length=10)
    sha256 = models.CharField(max_length=64)
    label = models.CharField(max_length=10, choices=Label.choices)
    split = models.CharField(max_length=10, choices=Split.choices, blank=True, default="")
    source = models.CharField(max_length=10, choices=Source.choices)
    # Groups images of one person for the split; from the file name, or a keyed hash.
    patient = models.CharField(max_length=64)
    excluded = models.BooleanField(default=False)
    exclusion_reason = models.CharField(max_length=200, blank=True)
    import_job = models.ForeignKey(
        "ImportJob", on_delete=models.SET_NULL, null=True, blank=True, related_name="images"
    )
    feedback_case = models.ForeignKey(
        "diagnosis.Case", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "sha256"], name="mlops_image_unique_content")
        ]
        indexes = [models.Index(fields=["dataset", "excluded", "split", "label"])]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.label})"


class LabelChange(models.Model):
    """The audit trail of relabels: who, when, old and new label."""

    image = models.ForeignKey(DatasetImage, on_delete=models.CASCADE, related_name="label_changes")
    actor = person_field()
    old_label = models.CharField(max_length=10, choices=Label.choices)
    new_label = models.CharField(max_length=10, choices=Label.choices)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.old_label} -> {self.new_label}"


class ImportJob(Job):
    Status = JobStatus

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="imports")
    source_name = models.CharField(max_length=255)
    upload = models.FileField(upload_to=import_upload_path, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict)
    created_by = person_field()
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Import {self.pk}"


class TrainingRun(Job):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="runs")
    config = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    history = models.JSONField(default=list)  # one dict per finished epoch
    log = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    created_by = person_field()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    model_version = produced_version_field(related_name="training_run")

    def __str__(self) -> str:
        return f"Run {self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED)


class Evaluation(Job):
    """A version scored on a dataset's test split; `items_sha256` identifies exactly which
    images and labels, so two versions compare only on the same set."""

    Status = JobStatus

    PLOTS = ("roc", "precision_recall", "calibration", "confusion_matrix")

    version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.CASCADE, related_name="evaluations"
    )
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="evaluations")
    items_sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    metrics = models.JSONField(default=dict)
    plots = models.JSONField(default=dict)  # plot name -> storage name

    def __str__(self) -> str:
        return f"Evaluation {self.pk}"


class SiteCalibration(Job):
    """A base version calibrated on this site's signed cases into a new version: the
    filters that chose the cases, the case-level split into a fitting and a held-back part
    (`items`, fixed when it was requested), the fit, and the base's and the new version's
    figures on the held-back part (mlops.calibration, mlops.execute.calibration)."""

    Status = JobStatus

    base_version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.PROTECT, related_name="site_calibrations"
    )
    new_version = produced_version_field(related_name="site_calibration")
    filters = models.JSONField(default=dict)  # since, until, source, modality, manufacturer
    options = models.JSONField(default=dict)  # holdout, target_sensitivity, min_per_class...
    # One row per image: [image id, case id, probability, served threshold, truth, held back].
    items = models.JSONField(default=list)
    counts = models.JSONField(default=dict)  # {"fitting": {"NORMAL": n, ...}, "held_back": ...}
    fit = models.JSONField(default=dict)  # scale, shift, threshold, in-sample figures
    before = models.JSONField(default=dict)  # the base version on the held-back part
    after = models.JSONField(default=dict)  # the calibrated version on the held-back part
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    requested_by = person_field()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"Site calibration {self.pk} of {self.base_version_id}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)


class Event(models.Model):
    """Audit trail of imports, relabels, exclusions, splits, runs, evaluations and site
    calibrations."""

    actor = person_field()
    action = models.CharField(max_length=30)
    detail = models.CharField(max_length=300, blank=True)
    dataset = models.ForeignKey(Dataset, on_delete=models.SET_NULL, null=True, related_name="+")
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.detail}"
