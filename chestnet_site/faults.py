"""Faults of the services ChestNet depends on that pass: a database, broker or object store
that is down, restarting or slow, or a disk or store that is full. Workers retry on them;
the web answers 503, not 500."""

from __future__ import annotations

import errno

from django.db import InterfaceError, OperationalError

# A disk with no room left, or a quota reached: the write fails until an operator frees space.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# What S3-compatible stores answer when they are full (MinIO's code; 507 is WebDAV's and
# several gateways' "Insufficient Storage").
_STORE_FULL_CODES = frozenset({"InsufficientStorage", "XMinioStorageFull", "QuotaExceeded"})


class StorageFull(OSError):
    """A write refused because the disk or the object store is full (errno kept). Raised
    by `chestnet_site.storage.FileSystemStorage` after it removed the part it wrote."""


def storage_full(exc: BaseException) -> bool:
    """The disk or object store has no room (or quota) left for a write."""
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return True
    response = getattr(exc, "response", None)  # botocore's ClientError
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in _STORE_FULL_CODES or status == 507


def _object_store_faults() -> tuple[type[Exception], ...]:
    """botocore's connection and read faults (an object store that is down or slow): not
    Python's ConnectionError. Its 5xx and throttling answers botocore retries itself."""
    try:
        from botocore.exceptions import ConnectionError as StoreConnectionError
        from botocore.exceptions import HTTPClientError
    except ImportError:  # the local file system needs no botocore
        return ()
    return (StoreConnectionError, HTTPClientError)


OBJECT_STORE_FAULTS = _object_store_faults()
TRANSIENT: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
    StorageFull,  # passes once space is freed: the worker retries, then fails the image
    *OBJECT_STORE_FAULTS,
)


def unavailable(exc: BaseException) -> bool:
    """A fault of a service the request needed, not of the request or the code: a
    database or object store that is down, or a disk or store that is full. Nothing was
    saved (writes are undone, files deleted), so the answer is 503 with a sentence."""
    return isinstance(exc, (OperationalError, *OBJECT_STORE_FAULTS)) or storage_full(exc)
