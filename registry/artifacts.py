"""Artifacts in storage, and the local copy a worker loads."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from registry.models import ModelVersion


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
