"""Thin Celery tasks of the DICOM network: ids in, one service call."""

from __future__ import annotations

import logging

from celery import shared_task

from dicomnet import sending, services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def outbound_send_task(outbound_id: int) -> str:
    outcome = sending.outbound_deliver(outbound_id=outbound_id)
    logger.info("Outbound object %s: %s", outbound_id, outcome)
    return outcome


@shared_task(acks_late=True, ignore_result=True)
def outbound_sweep_task() -> int:
    """Put new results and reports in the outbox, and queue what is due (retries)."""
    made = services.outbox_fill()
    due = services.outbound_due()
    for outbound_id in due:
        outbound_send_task.delay(outbound_id)
    return made + len(due)
