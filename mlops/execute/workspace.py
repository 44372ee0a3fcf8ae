"""Local files for work in a worker: a run's or an evaluation's folder, and dataset images
as local paths (the file itself on local storage, else a copy in the folder)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from django.conf import settings

from mlops.models import DatasetImage


def work_folder(prefix: str) -> Path:
    root = Path(settings.CHESTNET_TRAINING_WORK_DIR)
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))


def local_file(image: DatasetImage, work: Path) -> Path:
    try:
        return Path(image.file.path)
    except NotImplementedError:  # remote storage: a local copy for this run
        target = work / "images" / f"{image.pk}.bin"
        target.parent.mkdir(parents=True, exist_ok=True)
        with image.file.open("rb") as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        return target
