"""Model versions: storing artifacts through Django's storage, the shipped default as the
first version, activation at an operating point, and the local path a worker loads."""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from ml.artifact import DEFAULT_ARTIFACT, ArtifactError, card_path, read_card
from mlops.models import Activation, Dataset, ModelVersion, TrainingRun
from mlops.services import ServiceError, event_record

logger = logging.getLogger(__name__)

CARD_DEFAULT = "card"


def version_register(
    *, path: Path, origin: str, run: TrainingRun | None = None, dataset: Dataset | None = None
) -> ModelVersion:
    """Copy an artifact and its card into storage and record the version (sha256-checked)."""
    card = read_card(path)
    folder = f"models/{uuid.uuid4().hex}"
    stored = []
    try:
        for source, name in ((path, "model.keras"), (card_path(path), "model.json")):
            with source.open("rb") as handle:
                stored.append(default_storage.save(f"{folder}/{name}", File(handle)))
        return ModelVersion.objects.create(
            version=card["version"],
            origin=origin,
            artifact=stored[0],
            card_file=stored[1],
            card=card,
            sha256=card["sha256"],
            run=run,
            dataset=dataset,
        )
    except Exception:
        for name in stored:
            default_storage.delete(name)
        raise


def ensure_default_version() -> ModelVersion | None:
    """On a fresh install the configured model (CHESTNET_MODEL_PATH, else the shipped
    default) becomes the first, active version. Idempotent; None if the file is missing."""
    if ModelVersion.objects.exists():
        return None
    path = Path(settings.CHESTNET_MODEL_PATH or DEFAULT_ARTIFACT)
    try:
        read_card(path)
    except ArtifactError as exc:
        logger.warning("No default model version registered: %s", exc)
        return None
    try:
        with transaction.atomic():
            version = version_register(path=path, origin=ModelVersion.Origin.SHIPPED)
            return version_activate(version=version, user=None, operating_point=CARD_DEFAULT)
    except IntegrityError:  # another process registered it at the same moment
        return None


def threshold_for(version: ModelVersion, operating_point: str) -> tuple[float, str]:
    """(threshold, description) for "card" or a target sensitivity such as "0.97": the
    highest validation threshold reaching it (the most specific such point)."""
    if operating_point == CARD_DEFAULT:
        return float(version.card["threshold"]), "card default: " + version.card.get(
            "threshold_rule", "as trained"
        )[:80]
    try:
        target = float(operating_point)
    except ValueError:
        raise ServiceError(f"Unknown operating point {operating_point!r}.") from None
    points = version.validation.get("operating_points") or []
    reaching = [p for p in points if p["sensitivity"] >= target]
    if not reaching:
        raise ServiceError(
            f"This version has no validation operating point with sensitivity ≥ {target:.2f}."
        )
    best = max(reaching, key=lambda p: p["threshold"])
    return float(best["threshold"]), (
        f"sensitivity ≥ {target:.2f} (validation: sensitivity {best['sensitivity']:.3f}, "
        f"specificity {best['specificity']:.3f})"
    )


@transaction.atomic
def version_activate(
    *, version: ModelVersion, user, operating_point: str = CARD_DEFAULT
) -> ModelVersion:
    """Make this the version new analyses use, at the chosen threshold. Also rollback."""
    threshold, description = threshold_for(version, operating_point)
    _check_artifact(version)
    ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
    ModelVersion.objects.filter(pk=version.pk).update(
        is_active=True,
        active_threshold=threshold,
        operating_point=description,
        activated_by=user,
        activated_at=timezone.now(),
    )
    Activation.objects.create(
        version=version, threshold=threshold, operating_point=description, actor=user
    )
    event_record(
        actor=user, action="activated", detail=f"{version.version} at threshold {threshold:.4f}"
    )
    version.refresh_from_db()
    return version


def _check_artifact(version: ModelVersion) -> None:
    """Refuse to activate a file that is missing or altered (sha256 against its card), so
    workers are never pointed at a model they cannot load."""
    try:
        card = read_card(local_artifact(version))
    except (ArtifactError, OSError) as exc:
        raise ServiceError(f"The artifact of {version.version} cannot be used: {exc}") from exc
    if card["sha256"] != version.sha256:
        raise ServiceError(f"The stored artifact of {version.version} is not the registered one.")


@transaction.atomic
def version_rollback(*, activation: Activation, user) -> ModelVersion:
    """Activate an earlier version again with the threshold it had then."""
    version = activation.version
    _check_artifact(version)
    ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
    ModelVersion.objects.filter(pk=version.pk).update(
        is_active=True,
        active_threshold=activation.threshold,
        operating_point=activation.operating_point,
        activated_by=user,
        activated_at=timezone.now(),
    )
    Activation.objects.create(
        version=version,
        threshold=activation.threshold,
        operating_point=activation.operating_point,
        actor=user,
    )
    event_record(actor=user, action="rolled_back", detail=f"to {version.version}")
    version.refresh_from_db()
    return version


def local_artifact(version: ModelVersion) -> Path:
    """A local path of the artifact with its card beside it: the file itself on a local
    file system storage, else a copy cached by sha256."""
    try:
        return Path(default_storage.path(version.artifact))
    except NotImplementedError:
        pass
    folder = Path(settings.CHESTNET_MODEL_CACHE) / version.sha256
    target = folder / "model.keras"
    if not target.exists():
        tmp = folder.with_name(f"{version.sha256}.{uuid.uuid4().hex}.tmp")
        tmp.mkdir(parents=True)
        for name, stored in (("model.keras", version.artifact), ("model.json", version.card_file)):
            with default_storage.open(stored, "rb") as src, (tmp / name).open("wb") as dst:
                shutil.copyfileobj(src, dst)
        try:
            tmp.rename(folder)
        except OSError:  # another process cached it first
            shutil.rmtree(tmp, ignore_errors=True)
    return target
