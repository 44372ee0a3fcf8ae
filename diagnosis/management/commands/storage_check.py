"""Whether the file storage (MEDIA_ROOT, or the object store's bucket) takes a write now:
`make run` waits on it before registering the default model, an operator runs it after
changing the storage settings. Prints one line; exit 0 ready, 1 not yet (down, starting,
slow or full: worth waiting for), 2 refused (credentials, bucket: a setting to fix)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from chestnet_site import faults
from chestnet_site.storage import storage_probe

NOT_YET, REFUSED = 1, 2


class Command(BaseCommand):
    help = "Write and delete a small file in the storage; exit 0 ready, 1 not yet, 2 refused."

    def handle(self, *args: Any, **options: Any) -> None:
        where = settings.STORAGES["default"].get("OPTIONS", {}).get("endpoint_url", "")
        where = where or str(settings.MEDIA_ROOT)
        try:
            storage_probe()
        except Exception as exc:
            self.stdout.write(f"The storage at {where} does not take a write: {_reason(exc)}")
            raise SystemExit(NOT_YET if _passes(exc) else REFUSED) from None
        self.stdout.write(f"The storage at {where} takes writes.")


def _passes(exc: Exception) -> bool:
    """A fault that goes away by itself: unreachable, slow, full, or a 5xx answer (a
    SeaweedFS whose volume server has not joined yet says 500)."""
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return faults.unavailable(exc) or isinstance(exc, TimeoutError) or (status or 0) >= 500


def _reason(exc: Exception) -> str:
    code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
    return f"{type(exc).__name__}{f' ({code})' if code else ''}: {str(exc)[:200]}"
