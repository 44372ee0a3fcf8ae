"""Reads for the mlops pages, commands and workers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet

from mlops.models import Dataset, DatasetImage, Evaluation, Label, ModelVersion, Split


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


def active_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


@dataclass(frozen=True)
class ActiveModel:
    pk: int
    version: str
    sha256: str
    threshold: float | None

    @property
    def key(self) -> tuple:
        return (self.pk, self.sha256, self.threshold)


def active_model() -> ActiveModel | None:
    """What the workers must serve: one indexed query, cheap enough for every task."""
    row = (
        ModelVersion.objects.filter(is_active=True)
        .values_list("pk", "version", "sha256", "active_threshold")
        .first()
    )
    return ActiveModel(*row) if row else None


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
