from __future__ import annotations

from celery import shared_task

from monitoring.alerts import alerts_check


@shared_task(ignore_result=True)
def alerts_check_task() -> int:
    """Beat: check the active version's figures against the alert floors."""
    return len(alerts_check())
