"""The inference queue: publishing an image's analysis task (at once, or once the
transaction commits), the lease of an image in analysis, and the sweep that publishes again
the tasks that were lost."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from chestnet_site.queue import enqueue, enqueue_on_commit
from diagnosis.models import Image

# An image 'processing' for longer than this was abandoned by a dead worker.
PROCESSING_LEASE = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 30)
INFERENCE_TASK = "diagnosis.tasks.inference_run_task"


def image_enqueue(*, image_id: int) -> bool:
    """Publish the inference task. If the broker is down the image stays queued and the
    periodic requeue sweep publishes it again later; the upload still succeeds."""
    return enqueue(INFERENCE_TASK, image_id)


def image_enqueue_on_commit(*, image_id: int) -> None:
    enqueue_on_commit(INFERENCE_TASK, image_id)


def requeue_stale(*, now=None) -> int:
    """Publish again images whose task was lost: queued while the broker was down, or
    left 'processing' by a worker that died. Duplicates are harmless (claiming)."""
    now = now or timezone.now()
    stale_queued = Q(
        status=Image.Status.QUEUED,
        enqueued_at__lt=now - timedelta(seconds=settings.CHESTNET_REQUEUE_AFTER_S),
    )
    abandoned = Q(status=Image.Status.PROCESSING, claimed_at__lt=now - PROCESSING_LEASE)
    count = 0
    for image_id in Image.objects.filter(stale_queued | abandoned).values_list("pk", flat=True):
        Image.objects.filter(pk=image_id).update(enqueued_at=now)
        count += image_enqueue(image_id=image_id)
    return count
