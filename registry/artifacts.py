"""Artifacts in storage, and the local copy a worker loads."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from ml.artifact import ArtifactError, sha256_of
from registry.models import ModelVersion


def local_artifact(version: ModelVersion) -> Path:
    """A local path of the artifact with its card beside it: the file itself on a local
    file system storage, else a copy cached by sha256 (in CHESTNET_MODEL_CACHE, a cache:
    deleting it costs one download per worker)."""
    try:
        return Path(default_storage.path(version.artifact))
    except NotImplementedError:
        pass
    folder = Path(settings.CHESTNET_MODEL_CACHE) / version.sha256
    target = folder / "model.keras"
    if not target.exists():
        _download(version, folder)
    return target


def _download(version: ModelVersion, folder: Path) -> None:
    """Copy into a temporary folder, check the sha256, then rename: a copy cut short (the
    store blinked, the worker was killed) or altered is never taken for the artifact."""
    tmp = folder.with_name(f"{version.sha256}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir(parents=True)
    try:
        for name, stored in (("model.keras", version.artifact), ("model.json", version.card_file)):
            with default_storage.open(stored, "rb") as src, (tmp / name).open("wb") as dst:
                shutil.copyfileobj(src, dst)
        if sha256_of(tmp / "model.keras") != version.sha256:
            raise ArtifactError(
                f"The stored artifact of model version {version.version} is altered."
            )
        try:
            tmp.rename(folder)
        except OSError:  # another process cached it first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
