"""What `/healthz` reports. The site's own probes (the database, the broker and its workers,
the file storage) live here; apps above the site's plumbing add theirs (the DICOM listener,
the PACS outbox, say) through `HealthAppConfig`, so the page that reports them needs no
import upwards: an app registers them in its AppConfig.ready(), the health view asks every
one."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from django.apps import AppConfig
from django.db import connection
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)
_PROBES: dict[str, Callable[[], Any]] = {}
_CHECKS: dict[str, Callable[[], Any]] = {}


def probe_register(name: str, probe: Callable[[], Any]) -> None:
    """`probe()` asks a process the site runs with (the DICOM listener) whether it answers:
    /healthz lists it with the database, the broker and its workers, before storage."""
    _PROBES[name] = probe


def check_register(name: str, check: Callable[[], Any]) -> None:
    """`check()` returns a JSON-able value: no patient data, quick (one query). /healthz
    lists the checks after the probes."""
    _CHECKS[name] = check


def probes_run() -> dict[str, Any]:
    """Every registered probe's value; 'unavailable' for one that raises."""
    return _run(_PROBES)


def checks_run() -> dict[str, Any]:
    """Every registered check's value; 'unavailable' for one that raises."""
    return _run(_CHECKS)


def _run(registered: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for name, check in registered.items():
        try:
            state[name] = check()
        except Exception:
            logger.exception("Health check %s failed", name)
            state[name] = "unavailable"
    return state


class HealthAppConfig(AppConfig):
    """The config of an app that adds to /healthz: `health_probes` and `health_checks` map a
    key of the page to the dotted path of its function, imported and registered in ready()
    (the functions read models, which are not ready before). An apps.py imports this
    module, not the class: Django takes the one AppConfig class an apps.py holds."""

    health_probes: ClassVar[dict[str, str]] = {}
    health_checks: ClassVar[dict[str, str]] = {}

    def ready(self) -> None:
        for name, path in self.health_probes.items():
            probe_register(name, import_string(path))
        for name, path in self.health_checks.items():
            check_register(name, import_string(path))


def database_state() -> str:
    """'ok' when the database answers a query."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        logger.exception("Health check: database unavailable")
        return "unavailable"
    return "ok"


def storage_state() -> str:
    """'ok' when the file storage (local folder or object store bucket) answers a lookup.
    Reading the worklist needs only the database, so an unreachable store does not make
    the site unhealthy: uploads and images answer 503 until it is back."""
    from django.core.files.storage import default_storage

    try:
        default_storage.exists("healthz")
    except Exception:
        logger.exception("Health check: storage unavailable")
        return "unavailable"
    return "ok"


def broker_state() -> tuple[str, int]:
    """The broker's state and how many workers answer a ping."""
    from chestnet_site.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception:
        return "unavailable", 0
    try:
        replies = app.control.ping(timeout=0.5) or []
    except Exception:
        replies = []
    return "ok", len(replies)
