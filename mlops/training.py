"""Training runs and evaluations. `*_start` run in the web process or a command and only
queue work; `*_execute` run in a `training` worker child, which may import TensorFlow."""

from __future__ import annotations

import logging
import shlex
import shutil
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from ml.data import MIN_TRAIN_PER_CLASS, MIN_VALIDATION_PER_CLASS
from mlops import selectors
from mlops.models import Dataset, DatasetImage, Evaluation, Label, ModelVersion, Split, TrainingRun
from mlops.services import ServiceError, event_record

logger = logging.getLogger(__name__)

ARCHS = ("resnet", "vgg")
# ml.data's minimums (ml.data is TensorFlow-free); the worker's ml.train check applies them.
MIN_PER_CLASS = {Split.TRAIN: MIN_TRAIN_PER_CLASS, Split.VALIDATION: MIN_VALIDATION_PER_CLASS}
DEFAULTS: dict[str, Any] = {
    "epochs": 20,
    "arch": "resnet",
    "image_size": 160,
    "width": 32,
    "stages": 4,
    "seed": 1337,
}
STOP_POLL_S = 1.0
MIN_WIDTH = 16  # ml.model.MIN_WIDTH; importing ml.model would load Keras in the web process


def run_config(**given: Any) -> dict[str, Any]:
    config = {**DEFAULTS, **{k: v for k, v in given.items() if v not in (None, "")}}
    if config["arch"] not in ARCHS:
        raise ServiceError(f"Unknown architecture {config['arch']!r}; choose {', '.join(ARCHS)}.")
    checks = (
        ("epochs", 1, 500),
        ("image_size", 32, 512),
        ("width", MIN_WIDTH, 256),
        ("stages", 1, 6),
    )
    for key, low, high in checks:
        config[key] = int(config[key])
        if not low <= config[key] <= high:
            raise ServiceError(f"{key.replace('_', ' ')} must be between {low} and {high}.")
    config["seed"] = int(config["seed"])
    return config


def trainable_problems(dataset: Dataset) -> list[str]:
    balance = selectors.dataset_balance(dataset=dataset)
    problems = []
    for split, minimum in MIN_PER_CLASS.items():
        for label in Label.values:
            count = balance[split][label]
            if count < minimum:
                problems.append(
                    f"The {split} split has {count} {label} image(s); at least {minimum} are needed"
                    " (import more images or assign splits)."
                )
    return problems


def training_run_start(*, dataset: Dataset, user, **options: Any) -> TrainingRun:
    """Refuse a dataset that cannot train (one class, too few images), else queue a run."""
    config = run_config(**options)
    problems = trainable_problems(dataset)
    if problems:
        raise ServiceError(" ".join(problems))
    with transaction.atomic():
        run = TrainingRun.objects.create(dataset=dataset, config=config, created_by=user)
        event_record(
            actor=user, action="run_queued", detail=f"run {run.pk}: {config}", dataset=dataset
        )
        transaction.on_commit(lambda: _enqueue_run(run.pk))
    return run


def _enqueue_run(run_id: int) -> None:
    from mlops.tasks import training_run_task

    try:
        training_run_task.apply_async(args=[run_id])
    except Exception:  # kombu raises many types when the broker is unreachable
        logger.warning("Broker unavailable; training run %s not queued", run_id)
        _finish(
            run_id,
            TrainingRun.Status.FAILED,
            error="The task queue is unavailable; start the run again.",
        )


def training_run_cancel(*, run: TrainingRun, user) -> TrainingRun:
    """A queued run is cancelled at once; a running one stops after the current batch."""
    with transaction.atomic():
        TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
            status=TrainingRun.Status.CANCELLED, finished_at=timezone.now(), cancel_requested=True
        )
        TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
            cancel_requested=True
        )
        event_record(
            actor=user, action="run_cancelled", detail=f"run {run.pk}", dataset=run.dataset
        )
    run.refresh_from_db()
    return run


def _finish(run_id: int, status: str, *, error: str = "") -> None:
    TrainingRun.objects.filter(pk=run_id).exclude(
        status__in=[TrainingRun.Status.SUCCEEDED, TrainingRun.Status.CANCELLED]
    ).update(status=status, error=error, finished_at=timezone.now())


def training_run_lost(run_id: int, *, reason: str) -> None:
    """The worker lost the run's process: fail it unless it already finished."""
    TrainingRun.objects.filter(
        pk=run_id, status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
    ).update(status=TrainingRun.Status.FAILED, error=reason[:1000], finished_at=timezone.now())


def evaluation_lost(evaluation_id: int, *, reason: str) -> None:
    Evaluation.objects.filter(
        pk=evaluation_id, status__in=[Evaluation.Status.QUEUED, Evaluation.Status.RUNNING]
    ).update(status=Evaluation.Status.FAILED, error=reason[:1000])


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
    work = Path(settings.CHESTNET_TRAINING_WORK_DIR) / f"run-{run_id}-{uuid.uuid4().hex[:8]}"
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
        _finish(run.pk, TrainingRun.Status.CANCELLED)
        return "cancelled"
    except ValueError as exc:  # ml.train's refusals: one class, too few images
        log.line(f"Refused: {exc}")
        _finish(run.pk, TrainingRun.Status.FAILED, error=str(exc))
        return "failed"
    except SoftTimeLimitExceeded:
        _finish(
            run.pk, TrainingRun.Status.FAILED, error="The run exceeded the training time limit."
        )
        return "failed"
    except Exception as exc:
        logger.exception("Training run %s failed", run.pk)
        log.line(traceback.format_exc(limit=5))
        _finish(
            run.pk,
            TrainingRun.Status.FAILED,
            error=f"Training failed: {type(exc).__name__}: {exc}"[:1000],
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
            path=str(_local_file(image, work)),
            label=image.label,
            patient=image.patient,
            sha256=image.sha256,
        )
        for image in images
    ]


def _local_file(image: DatasetImage, work: Path) -> Path:
    try:
        return Path(image.file.path)
    except NotImplementedError:  # remote storage: a local copy for this run
        target = work / "images" / f"{image.pk}.bin"
        target.parent.mkdir(parents=True, exist_ok=True)
        with image.file.open("rb") as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        return target


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
    from mlops.versions import version_register

    version = version_register(
        path=work / "out" / "model.keras",
        origin=ModelVersion.Origin.TRAINED,
        run=run,
        dataset=run.dataset,
    )
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
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.SUCCEEDED, finished_at=timezone.now()
    )
    event_record(
        actor=run.created_by,
        action="run_succeeded",
        detail=f"run {run.pk}: {version.version}",
        dataset=run.dataset,
    )
    return "succeeded"


# --- evaluations -----------------------------------------------------------------------


def evaluation_start(*, version: ModelVersion, dataset: Dataset, user) -> Evaluation:
    items = selectors.test_items(dataset=dataset)
    if not items:
        raise ServiceError(f"The dataset {dataset.name!r} has no test split; assign splits first.")
    with transaction.atomic():
        evaluation = Evaluation.objects.create(
            version=version, dataset=dataset, items_sha256=selectors.items_digest(items)
        )
        event_record(
            actor=user,
            action="evaluation_queued",
            detail=f"{version.version} on {dataset.name}",
            dataset=dataset,
        )
        transaction.on_commit(lambda: _enqueue_evaluation(evaluation.pk))
    return evaluation


def _enqueue_evaluation(evaluation_id: int) -> None:
    from mlops.tasks import evaluation_run_task

    try:
        evaluation_run_task.apply_async(args=[evaluation_id])
    except Exception:
        Evaluation.objects.filter(pk=evaluation_id).update(
            status=Evaluation.Status.FAILED, error="The task queue is unavailable."
        )


def evaluation_execute(*, evaluation_id: int) -> str:
    """Score the version on the test split at its card's threshold; store metrics and plots."""
    if not Evaluation.objects.filter(pk=evaluation_id, status=Evaluation.Status.QUEUED).update(
        status=Evaluation.Status.RUNNING
    ):
        return "skipped"
    evaluation = Evaluation.objects.select_related("version", "dataset").get(pk=evaluation_id)
    work = Path(
        tempfile.mkdtemp(prefix="evaluation-", dir=_ensure(settings.CHESTNET_TRAINING_WORK_DIR))
    )
    try:
        metrics, plots = _evaluate(evaluation, work)
    except Exception as exc:
        logger.exception("Evaluation %s failed", evaluation_id)
        Evaluation.objects.filter(pk=evaluation_id).update(
            status=Evaluation.Status.FAILED, error=str(exc)[:1000]
        )
        return "failed"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Evaluation.objects.filter(pk=evaluation_id).update(
        status=Evaluation.Status.DONE, metrics=metrics, plots=plots
    )
    return "done"


def _ensure(path) -> str:
    Path(path).mkdir(parents=True, exist_ok=True)
    return str(path)


def _evaluate(evaluation: Evaluation, work: Path) -> tuple[dict, dict]:
    from ml.evaluate import evaluate_items
    from ml.predictor import Predictor
    from mlops.versions import local_artifact

    images = selectors.test_items(dataset=evaluation.dataset)
    if selectors.items_digest(images) != evaluation.items_sha256:
        raise ServiceError(
            "The test split changed since this evaluation was queued; start it again."
        )
    items = [(_local_file(image, work), Label.values.index(image.label)) for image in images]
    predictor = Predictor.load(local_artifact(evaluation.version))
    summary, _rows, _refused = evaluate_items(predictor, items, report=work / "report")
    plots = {}
    folder = f"evaluations/{uuid.uuid4().hex}"
    for name in ("roc", "precision_recall", "calibration", "confusion_matrix"):
        with (work / "report" / f"{name}.png").open("rb") as handle:
            plots[name] = default_storage.save(f"{folder}/{name}.png", File(handle))
    return summary, plots
