"""Writes of the registry: storing artifacts, the shipped default as the first version,
activation at an operating point and rollback to an earlier activation.

The registry records activations; it does not judge them. Whether a version is good enough
to serve (the activation floors, overrides, re-analysis of the withdrawn version's cases) is
model operations' policy: `mlops.rollout`, which calls `version_activate` and
`version_rollback`. Only the first install's bootstrap (`ensure_default_version`) activates
without it."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from chestnet_site.errors import ServiceError
from ml.artifact import DEFAULT_ARTIFACT, ArtifactError, card_path, load_card
from registry.artifacts import local_artifact
from registry.models import Activation, ModelVersion
from registry.operating_point import CARD_DEFAULT, threshold_for

logger = logging.getLogger(__name__)


def version_register(*, path: Path, origin: str) -> ModelVersion:
    """Copy an artifact and its card into storage and record the version (sha256-checked)."""
    card = load_card(path)
    folder = f"models/{uuid.uuid4().hex}"
    stored = []
    try:
        for source, name in ((path, "model.keras"), (card_path(path), "model.json")):
            with source.open("rb") as handle:
                stored.append(default_storage.save(f"{folder}/{name}", File(handle)))
        return ModelVersion.objects.create(
            version=card.version,
            origin=origin,
            artifact=stored[0],
            card_file=stored[1],
            card=card.to_dict(),
            sha256=card.sha256,
        )
    except Exception:
        for name in stored:
            default_storage.delete(name)
        raise


def ensure_default_version() -> ModelVersion | None:
    """On a fresh install the configured model (CHESTNET_MODEL_PATH, else the shipped
    default) becomes the first, active version. Idempotent; None if the file is missing.

    This bootstrap activates without the activation floors of `mlops.rollout`: with no
    version at all the workers would serve the same file from CHESTNET_MODEL_PATH anyway,
    and the shipped default's card carries its validation evidence."""
    if ModelVersion.objects.exists():
        return None
    path = Path(settings.CHESTNET_MODEL_PATH or DEFAULT_ARTIFACT)
    try:
        load_card(path)
    except ArtifactError as exc:
        logger.warning("No default model version registered: %s", exc)
        return None
    try:
        with transaction.atomic():
            version = version_register(path=path, origin=ModelVersion.Origin.SHIPPED)
            return version_activate(version=version, user=None, operating_point=CARD_DEFAULT)
    except IntegrityError:  # another process registered it at the same moment
        return None


def version_activate(
    *,
    version: ModelVersion,
    user,
    operating_point: str = CARD_DEFAULT,
    override_reason: str = "",
) -> ModelVersion:
    """Make this the version new analyses use, at the chosen operating point.
    `override_reason`: why it was activated below the floors (mlops.rollout decides)."""
    threshold, description = threshold_for(version, operating_point)
    return _make_active(
        version=version,
        threshold=threshold,
        description=description,
        user=user,
        override_reason=override_reason,
    )


def version_rollback(*, activation: Activation, user, override_reason: str = "") -> ModelVersion:
    """Activate an earlier version again with the threshold it had then."""
    return _make_active(
        version=activation.version,
        threshold=activation.threshold,
        description=activation.operating_point,
        user=user,
        override_reason=override_reason,
    )


@transaction.atomic
def _make_active(
    *, version: ModelVersion, threshold: float, description: str, user, override_reason: str
) -> ModelVersion:
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
        version=version,
        threshold=threshold,
        operating_point=description,
        actor=user,
        override_reason=override_reason.strip(),
    )
    logger.info("Activated %s at threshold %.4f", version.version, threshold)
    version.refresh_from_db()
    return version


def _check_artifact(version: ModelVersion) -> None:
    """Refuse to activate a file that is missing or altered (sha256 against its card), so
    workers are never pointed at a model they cannot load."""
    try:
        card = load_card(local_artifact(version))
    except (ArtifactError, OSError) as exc:
        raise ServiceError(f"The artifact of {version.version} cannot be used: {exc}") from exc
    if card.sha256 != version.sha256:
        raise ServiceError(f"The stored artifact of {version.version} is not the registered one.")
