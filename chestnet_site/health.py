"""Health checks that apps above the site's plumbing add to `/healthz` (the DICOM network's
outbox, say), so the page that reports them needs no import upwards: an app registers its
check in its AppConfig.ready(), the health view asks every one."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)
_CHECKS: dict[str, Callable[[], Any]] = {}


def check_register(name: str, check: Callable[[], Any]) -> None:
    """`check()` returns a JSON-able value: no patient data, quick (one query)."""
    _CHECKS[name] = check


def checks_run() -> dict[str, Any]:
    """Every registered check's value; 'unavailable' for one that raises."""
    state: dict[str, Any] = {}
    for name, check in _CHECKS.items():
        try:
            state[name] = check()
        except Exception:
            logger.exception("Health check %s failed", name)
            state[name] = "unavailable"
    return state
