"""Thin Celery tasks: ids in, one service call, nothing else."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from chestnet_site import faults
from diagnosis import inference, orphans, services

logger = logging.getLogger(__name__)


# Transient faults: the database or storage blinked. Anything else is a bug or a bad model.
TRANSIENT = faults.TRANSIENT


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=30,
    max_retries=3,
)
def inference_run_task(self: Task, image_id: int) -> str:
    token = self.request.id or f"local-{image_id}"
    try:
        outcome = services.inference_run(
            image_id=image_id, token=token, predictor_loader=inference.get_predictor
        )
    except TRANSIENT as exc:
        # A retry is the same task (same id, same token): it takes the same images again.
        if self.request.retries >= self.max_retries:
            services.images_fail(token=token, reason=_failure_reason(exc))
        raise
    except SoftTimeLimitExceeded:
        services.images_fail(token=token, reason="The analysis took too long and was stopped.")
        return "timeout"
    except Exception as exc:
        logger.exception("Inference of image %s failed", image_id)
        services.images_fail(token=token, reason=_failure_reason(exc))
        return "failed"
    logger.info("Image %s: %s", image_id, outcome)
    return outcome


def _failure_reason(exc: BaseException) -> str:
    return services.FAILED_STORAGE_FULL if faults.storage_full(exc) else services.FAILED_GENERIC


@shared_task(acks_late=True, ignore_result=True)
def requeue_stale_task() -> int:
    return services.requeue_stale()


@shared_task(acks_late=True, ignore_result=True)
def orphans_sweep_task() -> int:
    return sum(orphans.orphans_sweep().values())
