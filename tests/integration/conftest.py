"""A real Celery worker process consuming real Redis and writing to the test database.

With REDIS_URL/DATABASE_URL set (CI: PostgreSQL and Redis on this machine) they are used;
without, a private Redis is started and the SQLite test database file is shared."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings

from chestnet_site import local_redis
from chestnet_site.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    url = os.environ.get("REDIS_URL")
    process = None
    if not url:
        process, url = local_redis.start_redis(tmp_path_factory.mktemp("redis"))
    celery_app.conf.broker_url = url
    yield url
    if process:
        local_redis.stop(process)


@pytest.fixture(scope="session")
def shared_media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(autouse=True)
def _shared_media(settings, shared_media):
    settings.MEDIA_ROOT = shared_media


def _database_url() -> str:
    db = django_settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = quote(db.get("USER") or "")
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


@pytest.fixture(scope="module")
def worker(django_db_setup, redis_url, shared_media, tiny_model_path, tmp_path_factory):
    """One worker (prefork, one child) for the module, on the test database."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": redis_url,
        "MEDIA_ROOT": str(shared_media),
        "CHESTNET_MODEL_PATH": str(tiny_model_path),
        "CHESTNET_REQUEUE_AFTER_S": "2",
        "PYTHONPATH": str(ROOT),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "chestnet_site",
                "worker",
                "-Q",
                "inference,celery",
                "--concurrency",
                "1",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"it-{os.getpid()}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _wait_for_worker(process, log)
    yield process
    local_redis.stop(process, timeout=20)


def _wait_for_worker(process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"Celery worker exited:\n{log.read_text()[-3000:]}")
        if b"ready." in log.read_bytes():
            return
        time.sleep(0.3)
    process.kill()
    pytest.fail(f"Celery worker did not start:\n{log.read_text()[-3000:]}")


def wait_for(predicate, *, timeout: float = 180, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting")


@pytest.fixture
def wait():
    return wait_for
