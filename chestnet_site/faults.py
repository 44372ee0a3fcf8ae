"""Faults of the services ChestNet depends on that pass: a database, broker or object store
that is down, restarting or slow. Workers retry on them; the web answers 503, not 500."""

from __future__ import annotations

from django.db import InterfaceError, OperationalError


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
    *OBJECT_STORE_FAULTS,
)
