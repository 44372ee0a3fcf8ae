"""How the embedded database is opened."""

from __future__ import annotations

import pytest
from django.db import connection


@pytest.mark.django_db
def test_the_embedded_sqlite_database_keeps_a_write_ahead_log():
    """Readers (web processes, the worker) do not wait for a writer's commit."""
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL: no journal mode to choose")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA synchronous")
        assert cursor.fetchone()[0] == 2  # FULL: a commit is on disk when it returns
