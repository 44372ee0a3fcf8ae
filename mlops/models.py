"""Labelled datasets, training runs, model versions and their evaluations. State changes
happen only in mlops.services; the web pages and commands call those."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


# Random names: imported file names can carry identifiers, and paths appear in logs.
def dataset_file_path(instance, filename: str) -> str:
    return f"datasets/{instance.dataset_id}/{uuid.uuid4().hex}.bin"


def dataset_thumb_path(instance, filename: str) -> str:
    return f"datasets/{instance.dataset_id}/thumbs/{uuid.uuid4().hex}.png"


def import_upload_path(instance, filename: str) -> str:
    return f"imports/{uuid.uuid4().hex}.zip"


def evaluation_plot_path(instance, filename: str) -> str:
    return f"evaluations/{uuid.uuid4().hex}-{filename}"


def prior_heatmap_path(instance, filename: str) -> str:
    return f"heatmaps/{uuid.uuid4().hex}.png"


class Label(models.TextChoices):
    NORMAL = "NORMAL", "Normal"
    PNEUMONIA = "PNEUMONIA", "Pneumonia"


class Split(models.TextChoices):
    UNASSIGNED = "", "Unassigned"
    TRAIN = "train", "Train"
    VALIDATION = "validation", "Validation"
    TEST = "test", "Test"


class Dataset(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    # Signed radiologist reports flow into the one dataset with this flag.
    is_feedback_target = models.BooleanField(default=False)
    split_seed = models.IntegerField(null=True, blank=True)
    split_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
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
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    old_label = models.CharField(max_length=10, choices=Label.choices)
    new_label = models.CharField(max_length=10, choices=Label.choices)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.old_label} -> {self.new_label}"


class ImportJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="imports")
    source_name = models.CharField(max_length=255)
    upload = models.FileField(upload_to=import_upload_path, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Import {self.pk}"


class TrainingRun(models.Model):
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
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Run {self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED)


class ModelVersion(models.Model):
    class Origin(models.TextChoices):
        SHIPPED = "shipped", "Shipped default"
        TRAINED = "trained", "Trained here"

    version = models.CharField(max_length=100, unique=True)
    origin = models.CharField(max_length=10, choices=Origin.choices)
    artifact = models.CharField(max_length=255)  # storage name of the .keras file
    card_file = models.CharField(max_length=255)  # storage name of its card, beside it
    card = models.JSONField(default=dict)
    sha256 = models.CharField(max_length=64)
    run = models.OneToOneField(
        TrainingRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="model_version"
    )
    dataset = models.ForeignKey(
        Dataset, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    is_active = models.BooleanField(default=False)
    active_threshold = models.FloatField(null=True, blank=True)
    operating_point = models.CharField(max_length=100, blank=True)
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    activated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="mlops_one_active_version"
            )
        ]

    def __str__(self) -> str:
        return self.version

    @property
    def validation(self) -> dict:
        return self.card.get("validation") or {}


class Activation(models.Model):
    """Every activation, kept for review and rollback."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="activations")
    threshold = models.FloatField()
    operating_point = models.CharField(max_length=100)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.version} at {self.threshold:.4f}"


class Evaluation(models.Model):
    """A version scored on a dataset's test split; `items_sha256` identifies exactly which
    images and labels, so two versions compare only on the same set."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="evaluations")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="evaluations")
    items_sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    metrics = models.JSONField(default=dict)
    plots = models.JSONField(default=dict)  # plot name -> storage name
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Evaluation {self.pk}"


class PriorPrediction(models.Model):
    """A prediction replaced by a re-run with another model version, kept unchanged."""

    image = models.ForeignKey("diagnosis.Image", on_delete=models.CASCADE, related_name="+")
    probability = models.FloatField()
    label = models.CharField(max_length=12)
    threshold = models.FloatField()
    model_version = models.CharField(max_length=100)
    heatmap = models.FileField(upload_to=prior_heatmap_path, blank=True)
    timings = models.JSONField(default=dict)
    predicted_at = models.DateTimeField()
    superseded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    superseded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-superseded_at"]

    def __str__(self) -> str:
        return f"{self.label} {self.probability:.2f} ({self.model_version})"


class Event(models.Model):
    """Audit trail of imports, relabels, exclusions, splits, runs and activations."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    action = models.CharField(max_length=30)
    detail = models.CharField(max_length=300, blank=True)
    dataset = models.ForeignKey(Dataset, on_delete=models.SET_NULL, null=True, related_name="+")
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.detail}"
