"""Spies: what the code under test did, recorded without changing what it does."""

from __future__ import annotations

from typing import Any


def storage_saves(monkeypatch: Any) -> list[bool]:
    """From now on, for every file the default storage saves, whether a database transaction
    was open at that moment."""
    from django.core.files.storage import default_storage
    from django.db import connection

    in_transaction: list[bool] = []
    save = default_storage.save

    def watched(name, content, max_length=None):
        in_transaction.append(connection.in_atomic_block)
        return save(name, content, max_length=max_length)

    monkeypatch.setattr(default_storage, "save", watched)
    return in_transaction
