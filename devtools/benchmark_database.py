"""A throwaway database for the benchmarks that fill one (scripts/worklist_benchmark.py,
scripts/monitoring_benchmark.py): SQLite in a temporary folder under CHESTNET_HOME, or a
database of its own beside the one `database_url` names on a PostgreSQL server, created on
entry and dropped on exit with the folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def throwaway_database(name: str, *, database_url: str | None, root: Path) -> Iterator[None]:
    """Django set up on a new, empty database named after `name` (e.g. "worklist-benchmark")."""
    home = Path(os.environ.get("CHESTNET_HOME") or root / "var")
    home.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=home))
    os.environ["CHESTNET_HOME"] = str(work)  # the SQLite file and media: thrown away after
    os.environ.pop("DATABASE_URL", None)
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chestnet_site.settings")
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the test client's host name
    old_name = connection.settings_dict["NAME"]
    if connection.vendor != "sqlite":
        # A name of its own: Django's default (test_<name>) may be a test run's database
        # on the same server (CI's), which autoclobber would drop.
        suffix = name.replace("-", "_")
        connection.settings_dict["TEST"]["NAME"] = f"test_{old_name}_{suffix}"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        shutil.rmtree(work, ignore_errors=True)


def machine_description() -> str:
    """ "x86_64 Linux, 2 CPUs, 24 GiB": the machine a figure was measured on."""
    import platform

    return f"{platform.machine()} Linux, {os.cpu_count()} CPUs, {_memory_gib()}"


def database_description() -> str:
    """The database the benchmark ran on, as read from it: SQLite's version and journal
    mode, or PostgreSQL's server version."""
    from django.db import connection

    with connection.cursor() as db:
        if connection.vendor != "sqlite":
            db.execute("show server_version")
            return f"PostgreSQL {db.fetchone()[0]}"
        db.execute("select sqlite_version()")
        version = db.fetchone()[0]
        db.execute("pragma journal_mode")
        mode = db.fetchone()[0]
    return f"SQLite {version} (a file, journal mode {mode}, as `make run` has it)"


def _memory_gib() -> str:
    try:
        with open("/proc/meminfo") as meminfo:
            kib = int(meminfo.readline().split()[1])
    except (OSError, ValueError, IndexError):
        return "memory unknown"
    return f"{kib / 1024 / 1024:.0f} GiB"
