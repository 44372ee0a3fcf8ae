"""Thin Celery tasks: ids in, one call of the worker side (mlops.execute). Training,
evaluation, site calibration and dataset imports run on the `training` queue; the feedback
pull is periodic, on the default queue. TensorFlow is imported inside the worker child,
never at import."""

from __future__ import annotations

from celery import shared_task
from celery.signals import task_failure
from django.conf import settings

from mlops.execute import calibration, evaluation, feedback, imports, training_run

LONG = {
    "soft_time_limit": settings.CHESTNET_TRAINING_TIME_LIMIT_S,
    "time_limit": settings.CHESTNET_TRAINING_TIME_LIMIT_S + 60,
    # Acked on receipt: a redelivery of an hours-long run would only be skipped by the claim.
    "acks_late": False,
}


@shared_task(**LONG)
def dataset_import_task(job_id: int) -> str:
    return imports.import_job_run(job_id=job_id)


@shared_task(**LONG)
def training_run_task(run_id: int) -> str:
    return training_run.training_run_execute(run_id=run_id)


@shared_task(**LONG)
def evaluation_run_task(evaluation_id: int) -> str:
    return evaluation.evaluation_execute(evaluation_id=evaluation_id)


@shared_task(**LONG)
def calibration_run_task(calibration_id: int) -> str:
    return calibration.calibration_execute(calibration_id=calibration_id)


@shared_task(acks_late=True, ignore_result=True)
def feedback_pull_task() -> int:
    return feedback.feedback_pull()


@task_failure.connect
def _child_lost(sender=None, args=None, exception=None, **kwargs) -> None:
    """A pool child that dies (a native crash in TensorFlow, the OOM killer) cannot record
    anything itself: the worker's parent reports it here, and the row is marked failed."""
    if sender is None or not args:
        return
    lost = {
        training_run_task.name: training_run.training_run_lost,
        evaluation_run_task.name: evaluation.evaluation_lost,
        calibration_run_task.name: calibration.calibration_lost,
        dataset_import_task.name: imports.import_job_lost,
    }.get(sender.name)
    if lost is not None:
        lost(args[0], reason=f"The worker process stopped unexpectedly ({exception}).")
