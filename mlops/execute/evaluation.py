"""Worker side of evaluations: score a registered version on a dataset's test split at its
card's threshold, and store the metrics (with the whole ROC curve) and plots."""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

import numpy as np
from django.core.files import File
from django.core.files.storage import default_storage

from chestnet_site.errors import ServiceError
from ml import metrics
from mlops import selectors
from mlops.execute.workspace import local_file, work_folder
from mlops.models import Evaluation, Label
from mlops.services import evaluation_fail
from registry.artifacts import local_artifact

logger = logging.getLogger(__name__)


def evaluation_execute(*, evaluation_id: int) -> str:
    """Idempotent: only the delivery that moves it from queued to running does the work."""
    if not Evaluation.objects.filter(pk=evaluation_id, status=Evaluation.Status.QUEUED).update(
        status=Evaluation.Status.RUNNING
    ):
        return "skipped"
    evaluation = Evaluation.objects.select_related("version", "dataset").get(pk=evaluation_id)
    work = work_folder("evaluation-")
    try:
        metrics, plots = _evaluate(evaluation, work)
    except Exception as exc:
        logger.exception("Evaluation %s failed", evaluation_id)
        evaluation_fail(evaluation_id, reason=str(exc))
        return "failed"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Evaluation.objects.filter(pk=evaluation_id).update(
        status=Evaluation.Status.DONE, metrics=metrics, plots=plots
    )
    return "done"


def _evaluate(evaluation: Evaluation, work: Path) -> tuple[dict, dict]:
    from ml.evaluate import evaluate_items
    from ml.predictor import Predictor

    images = selectors.test_items(dataset=evaluation.dataset)
    if selectors.items_digest(images) != evaluation.items_sha256:
        raise ServiceError(
            "The test split changed since this evaluation was queued; start it again."
        )
    items = [(local_file(image, work), Label.values.index(image.label)) for image in images]
    predictor = Predictor.load(local_artifact(evaluation.version))
    summary, rows, _refused = evaluate_items(predictor, items, report=work / "report")
    # The whole ROC curve (one point per distinct score), so the activation floors
    # (mlops.rollout) can read sensitivity and specificity at any threshold exactly.
    targets = np.array([row[1] for row in rows], dtype=float)
    scores = np.array([row[2] for row in rows], dtype=float)
    summary["operating_points"] = metrics.operating_points(targets, scores, limit=len(rows))
    plots = {}
    folder = f"evaluations/{uuid.uuid4().hex}"
    for name in Evaluation.PLOTS:
        with (work / "report" / f"{name}.png").open("rb") as handle:
            plots[name] = default_storage.save(f"{folder}/{name}.png", File(handle))
    return summary, plots


def evaluation_lost(evaluation_id: int, *, reason: str) -> None:
    """The worker lost the evaluation's process."""
    evaluation_fail(evaluation_id, reason=reason)
