"""Worker side of training runs: train on the dataset's splits (ml.train, TensorFlow in this
worker child only), register the version in the model registry, evaluate it on the test
split. Progress, log lines and cancellation go through the run's row."""

from __future__ import annotations

import logging
import shlex
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from mlops import selectors
from mlops.execute.evaluation import evaluation_execute
from mlops.execute.workspace import local_file, work_folder
from mlops.models import Dataset, Evaluation, Split, TrainingRun
from mlops.services import event_record, training_run_finish
from registry.models import ModelVersion
from registry.services import version_register

logger = logging.getLogger(__name__)

STOP_POLL_S = 1.0


def training_run_lost(run_id: int, *, reason: str) -> None:
    """The worker lost the run's process: fail it unless it already finished."""
    training_run_finish(run_id, TrainingRun.Status.FAILED, error=reason)


class _RunLog(logging.Handler):
    """Collects the run's log lines (ours and ml's) into TrainingRun.log."""

    def __init__(self, run_id: int):
        super().__init__(logging.INFO)
        self.run_id = run_id
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def line(self, text: str) -> None:
        self.emit(logging.LogRecord("mlops", logging.INFO, "", 0, text, None, None))
        self.flush_to_db()

    def flush_to_db(self) -> None:
        TrainingRun.objects.filter(pk=self.run_id).update(log="\n".join(self.lines[-2000:]))


def training_run_execute(*, run_id: int) -> str:
    """Train, register the version, evaluate it on the test split. Idempotent: only the
    delivery that moves the run from queued to running does the work."""
    if not TrainingRun.objects.filter(
        pk=run_id, status=TrainingRun.Status.QUEUED, cancel_requested=False
    ).update(status=TrainingRun.Status.RUNNING, started_at=timezone.now()):
        return "skipped"
    run = TrainingRun.objects.select_related("dataset").get(pk=run_id)
    log = _RunLog(run_id)
    ml_logger = logging.getLogger("ml")
    ml_logger.addHandler(log)
    work = work_folder(f"run-{run_id}-")
    try:
        return _train_and_register(run, log, work)
    finally:
        ml_logger.removeHandler(log)
        log.flush_to_db()
        shutil.rmtree(work, ignore_errors=True)


def _train_and_register(run: TrainingRun, log: _RunLog, work: Path) -> str:
    from celery.exceptions import SoftTimeLimitExceeded

    from ml.train import TrainingCancelled

    try:
        card = _train(run, log, work)
    except TrainingCancelled:
        log.line("Cancelled.")
        training_run_finish(run.pk, TrainingRun.Status.CANCELLED)
        return "cancelled"
    except ValueError as exc:  # ml.train's refusals: one class, too few images
        log.line(f"Refused: {exc}")
        training_run_finish(run.pk, TrainingRun.Status.FAILED, error=str(exc))
        return "failed"
    except SoftTimeLimitExceeded:
        training_run_finish(
            run.pk, TrainingRun.Status.FAILED, error="The run exceeded the training time limit."
        )
        return "failed"
    except Exception as exc:
        logger.exception("Training run %s failed", run.pk)
        log.line(traceback.format_exc(limit=5))
        training_run_finish(
            run.pk,
            TrainingRun.Status.FAILED,
            error=f"Training failed: {type(exc).__name__}: {exc}",
        )
        return "failed"
    return _register(run, log, work, card)


def _train(run: TrainingRun, log: _RunLog, work: Path) -> dict:
    from ml.data import Split as MlSplit
    from ml.train import resolve_config, train

    cfg = run.config
    version = f"{timezone.now():%Y%m%d-%H%M}-{cfg['arch']}{cfg['image_size']}-run{run.pk}"
    split = MlSplit(
        train=_records(run.dataset, Split.TRAIN, work),
        validation=_records(run.dataset, Split.VALIDATION, work),
    )
    sizes = f"{len(split.train)} train / {len(split.validation)} validation images"
    log.line(f"Training {version} on {sizes}.")
    config = resolve_config(
        None,
        {
            "data_root": str(work),
            "output": str(work / "out" / "model.keras"),
            "epochs": cfg["epochs"],
            "seed": cfg["seed"],
            "version": version,
            "dataset_name": f"ChestNet dataset {run.dataset.name!r}",
            "cache_dir": "",
            "model.arch": cfg["arch"],
            "model.image_size": cfg["image_size"],
            "model.width": cfg["width"],
            "model.stages": cfg["stages"],
        },
    )
    return train(
        config,
        split=split,
        progress=_progress(run.pk, log),
        should_stop=_should_stop(run.pk),
        verbose=0,
        command=_command(run),
    )


def _records(dataset: Dataset, split: str, work: Path):
    from ml.data import Record

    images = dataset.images.filter(excluded=False, split=split).order_by("pk")
    return [
        Record(
            path=str(local_file(image, work)),
            label=image.label,
            patient=image.patient,
            sha256=image.sha256,
        )
        for image in images
    ]


def _command(run: TrainingRun) -> str:
    cfg = run.config
    return "python manage.py train_model " + " ".join(
        [
            f"--dataset {shlex.quote(run.dataset.name)}",
            f"--epochs {cfg['epochs']}",
            f"--arch {cfg['arch']}",
            f"--image-size {cfg['image_size']}",
            f"--seed {cfg['seed']}",
        ]
    )


def _progress(run_id: int, log: _RunLog):
    def report(epoch: dict[str, Any]) -> None:
        run = TrainingRun.objects.only("history").get(pk=run_id)
        TrainingRun.objects.filter(pk=run_id).update(history=[*run.history, epoch])
        shown = ", ".join(f"{k} {v:.4f}" for k, v in epoch.items() if k not in ("epoch", "epochs"))
        log.line(f"Epoch {epoch['epoch']}/{epoch['epochs']}: {shown}")

    return report


def _should_stop(run_id: int):
    checked_at = [0.0]
    stop = [False]

    def should_stop() -> bool:
        now = time.monotonic()
        if not stop[0] and now - checked_at[0] >= STOP_POLL_S:
            checked_at[0] = now
            stop[0] = TrainingRun.objects.filter(pk=run_id, cancel_requested=True).exists()
        return stop[0]

    return should_stop


def _register(run: TrainingRun, log: _RunLog, work: Path, card: dict) -> str:
    with transaction.atomic():
        version = version_register(
            path=work / "out" / "model.keras", origin=ModelVersion.Origin.TRAINED
        )
        TrainingRun.objects.filter(pk=run.pk).update(model_version=version)
    log.line(f"Registered model version {version.version} (threshold {card['threshold']:.4f}).")
    items = selectors.test_items(dataset=run.dataset)
    if items:
        log.line(f"Evaluating on the test split ({len(items)} images).")
        evaluation = Evaluation.objects.create(
            version=version, dataset=run.dataset, items_sha256=selectors.items_digest(items)
        )
        evaluation_execute(evaluation_id=evaluation.pk)
    else:
        log.line("The dataset has no test split: no test evaluation.")
    training_run_finish(run.pk, TrainingRun.Status.SUCCEEDED)
    event_record(
        actor=run.created_by,
        action="run_succeeded",
        detail=f"run {run.pk}: {version.version}",
        dataset=run.dataset,
    )
    return "succeeded"
