"""Reads for the mlops pages, commands and workers."""

from __future__ import annotations

import hashlib

from django.db.models import Count, Prefetch, Q, QuerySet

from mlops.models import (
    Dataset,
    DatasetImage,
    Evaluation,
    Event,
    Label,
    SiteCalibration,
    Split,
    TrainingRun,
)
from registry.models import ModelVersion


def dataset_images(
    *,
    dataset: Dataset,
    label: str = "",
    split: str | None = None,
    source: str = "",
    excluded: str = "",
) -> QuerySet[DatasetImage]:
    images = dataset.images.all()
    if label in Label.values:
        images = images.filter(label=label)
    if split is not None and split in Split.values:
        images = images.filter(split=split)
    if source in DatasetImage.Source.values:
        images = images.filter(source=source)
    if excluded in ("yes", "no"):
        images = images.filter(excluded=excluded == "yes")
    return images.order_by("pk")


def dataset_balance(*, dataset: Dataset) -> dict[str, dict[str, int]]:
    """Included images per split and label, e.g. {"train": {"NORMAL": 10, "PNEUMONIA": 30}}."""
    rows = dataset.images.filter(excluded=False).values("split", "label").annotate(n=Count("pk"))
    balance: dict[str, dict[str, int]] = {
        s or "unassigned": {label: 0 for label in Label.values} for s in Split.values
    }
    for row in rows:
        balance[row["split"] or "unassigned"][row["label"]] = row["n"]
    return balance


def dataset_list() -> QuerySet[Dataset]:
    return Dataset.objects.annotate(
        image_count=Count("images", filter=Q(images__excluded=False)),
    ).order_by("name")


def test_items(*, dataset: Dataset) -> list[DatasetImage]:
    return list(dataset.images.filter(excluded=False, split=Split.TEST).order_by("pk"))


def items_digest(images: list[DatasetImage]) -> str:
    """Identifies an evaluation set: same content and labels, same digest."""
    digest = hashlib.sha256()
    for image in sorted(images, key=lambda i: i.sha256):
        digest.update(f"{image.sha256},{image.label}\n".encode())
    return digest.hexdigest()


def recent_runs(*, limit: int = 10) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.select_related("dataset", "model_version")[:limit]


def recent_events(*, dataset: Dataset | None = None, limit: int = 15) -> QuerySet[Event]:
    events = Event.objects.select_related("actor")
    return (events.filter(dataset=dataset) if dataset is not None else events)[:limit]


def versions_with_provenance() -> QuerySet[ModelVersion]:
    """Every version with the run and dataset that produced it."""
    return ModelVersion.objects.select_related("training_run__dataset")


def version_rows() -> list[dict]:
    """For the versions page: each version and the metrics of its latest finished test
    evaluation, in three queries whatever the number of versions."""
    done = Evaluation.objects.filter(status=Evaluation.Status.DONE).order_by("-created_at")
    versions = versions_with_provenance().prefetch_related(Prefetch("evaluations", queryset=done))
    rows = []
    for version in versions:
        latest = next(iter(version.evaluations.all()), None)  # the prefetched, finished ones
        rows.append({"version": version, "test": latest.metrics if latest else None})
    return rows


def evaluation_pair(
    *, a: ModelVersion, b: ModelVersion, dataset: Dataset
) -> tuple[str, Evaluation | None, Evaluation | None]:
    """The latest finished evaluations of both versions on the dataset's current test split."""
    digest = items_digest(test_items(dataset=dataset))

    def latest(version: ModelVersion) -> Evaluation | None:
        return (
            Evaluation.objects.filter(version=version, dataset=dataset, items_sha256=digest)
            .exclude(status=Evaluation.Status.FAILED)
            .order_by("-created_at")
            .first()
        )

    return digest, latest(a), latest(b)


def calibration_of(version: ModelVersion) -> SiteCalibration | None:
    """The site calibration that produced this version, if it is one."""
    return (
        SiteCalibration.objects.select_related("base_version", "requested_by")
        .defer("items")
        .filter(new_version=version)
        .first()
    )


def calibrations_from(version: ModelVersion) -> QuerySet[SiteCalibration]:
    """The site calibrations of this version (as their base), newest first."""
    return (
        SiteCalibration.objects.filter(base_version=version)
        .select_related("new_version", "requested_by")
        .defer("items")
    )
