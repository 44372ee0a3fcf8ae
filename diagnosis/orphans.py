"""Clinical files in storage that no row names. The services write a file, then commit its
row, and delete the file when the commit fails; a process that dies between the two (a
killed worker, a crashed host) leaves the file alone. The beat task `orphans_sweep_task`
removes such files once they are older than CHESTNET_ORPHAN_GRACE_S, and /healthz reports
the last sweep ("orphans")."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from chestnet_site.storage import orphans_remove
from diagnosis.models import (
    Image,
    Prediction,
    PriorPrediction,
    heatmap_path,
    original_path,
    preview_path,
)

logger = logging.getLogger(__name__)
# What the last sweep did, where every process (web, workers, other hosts) can read it.
REPORT = "health/orphan-sweep.json"


def orphans_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Remove the originals, previews and heatmaps no row names that were written more than
    CHESTNET_ORPHAN_GRACE_S ago; returns how many were removed from each folder."""
    now = now or timezone.now()
    older_than = now - timedelta(seconds=settings.CHESTNET_ORPHAN_GRACE_S)
    removed = {
        folder: orphans_remove(folder=folder, in_use=names, older_than=older_than)
        for folder, names in _names_in_use().items()
    }
    if any(removed.values()):
        logger.warning("Removed files no row names (older than the grace period): %s", removed)
    _report_write(now, removed)
    return removed


def _names_in_use() -> dict[str, set[str]]:
    heatmaps = set(Prediction.objects.values_list("heatmap", flat=True))
    heatmaps |= set(PriorPrediction.objects.values_list("heatmap", flat=True))
    return {
        original_path.folder: set(Image.objects.values_list("original", flat=True)),
        preview_path.folder: set(Image.objects.values_list("preview", flat=True)),
        heatmap_path.folder: heatmaps,
    }


def _report_write(now: datetime, removed: dict[str, int]) -> None:
    report = {"last_sweep": now.isoformat(), "removed": sum(removed.values()), "by_folder": removed}
    try:
        default_storage.delete(REPORT)
        default_storage.save(REPORT, ContentFile(json.dumps(report).encode()))
    except Exception:  # a full or unreachable store: the next sweep writes it
        logger.exception("Could not write the orphan sweep's report")


def orphans_health() -> dict[str, Any]:
    """The last sweep, for /healthz: when, and how many files it removed."""
    try:
        with default_storage.open(REPORT, "rb") as handle:
            report = json.loads(handle.read())
    except FileNotFoundError:
        return {"last_sweep": None, "removed": 0}
    return {"last_sweep": report.get("last_sweep"), "removed": report.get("removed", 0)}
