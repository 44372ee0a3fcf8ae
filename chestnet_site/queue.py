"""Publishing Celery tasks by name: services queue work without importing the task modules
(which import the services: that would be a cycle), and one place decides what happens
when the broker is unreachable."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue(task_name: str, *args: Any, on_unavailable: Callable[[], Any] | None = None) -> bool:
    """Publish the task `task_name(*args)` (routed by CELERY_TASK_ROUTES). If the broker
    cannot be reached, log it, call `on_unavailable` (mark the row failed, or leave it for a
    sweep) and return False; never raise."""
    from chestnet_site.celery import app

    try:
        app.send_task(task_name, args=list(args))
    except Exception:  # kombu raises many types when the broker is unreachable
        logger.warning("Broker unavailable; %s%s not queued", task_name, tuple(args))
        if on_unavailable is not None:
            on_unavailable()
        return False
    return True


def enqueue_on_commit(
    task_name: str, *args: Any, on_unavailable: Callable[[], Any] | None = None
) -> None:
    """`enqueue` once the current transaction commits, so a worker never reads a row that
    is not there yet (and nothing is published for a transaction that rolled back)."""
    transaction.on_commit(
        functools.partial(enqueue, task_name, *args, on_unavailable=on_unavailable)
    )
