"""pytest plugin for tests that run the real stack: Redis, Celery worker processes and the
test database and media folder they share with the test process. Registered in
tests/conftest.py; used by tests/integration and tests/e2e.

With REDIS_URL/DATABASE_URL set (CI: PostgreSQL and Redis on this machine) they are used;
without, a private Redis is started and the SQLite test database file is shared."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest

from devtools import local_redis
from devtools.ports import free_port
from devtools.workers import start_worker, stop_worker

T = TypeVar("T")


def use_broker(url: str) -> None:
    """Point this process's Celery app (what uploads publish with) at another broker."""
    from kombu import pools

    from chestnet_site.celery import app

    app.conf.broker_url = url
    # Celery's connection and producer pools live in kombu's global registries, keyed by
    # broker URL. Closing a pool leaves it registered, closed: switching back to that URL
    # later would get "Acquire on closed pool". Empty the registries instead.
    pools.reset()
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    process = None
    if not url:
        process, url = local_redis.start_redis(tmp_path_factory.mktemp("redis"))
    use_broker(url)
    yield url
    if process:
        local_redis.stop(process)


class PrivateRedis:
    """A redis-server of one test's own, which the test may stop, pause and start again on
    the same port (a broker outage) without disturbing other tests."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.port = directory, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process, _ = local_redis.start_redis(self.directory, port=self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.resume()
            local_redis.stop(self.process)
            self.process = None

    def pause(self) -> None:
        """Freeze the server: connections are accepted by the kernel, never answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def unacked(self) -> int:
        """Messages delivered to a worker and not yet acknowledged."""
        import redis

        count = redis.Redis.from_url(self.url).hlen("unacked")
        assert isinstance(count, int)
        return count


@pytest.fixture
def private_redis(tmp_path: Path, redis_url: str) -> Iterator[PrivateRedis]:
    """A running private Redis that this process publishes to for the test's duration."""
    server = PrivateRedis(tmp_path / "private-redis")
    server.start()
    use_broker(server.url)
    try:
        yield server
    finally:
        use_broker(redis_url)
        server.stop()


@pytest.fixture(scope="session")
def shared_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(autouse=True)
def _media_shared_with_workers(request: pytest.FixtureRequest) -> None:
    """A test that shares files with worker processes (any test that uses `shared_media`,
    e.g. through `worker`) stores its uploads where the workers read them."""
    if "shared_media" in request.fixturenames:
        settings = request.getfixturevalue("settings")
        settings.MEDIA_ROOT = request.getfixturevalue("shared_media")


def database_url() -> str:
    """The test database (not the configured one) as a URL for a worker process."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = quote(db.get("USER") or "")
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


@pytest.fixture(scope="module")
def worker_env(
    django_db_setup: None, redis_url: str, shared_media: Path, tiny_model_path: Path
) -> dict[str, str]:
    """Environment of a worker on the test database, shared media and the tiny model."""
    return {
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "MEDIA_ROOT": str(shared_media),
        "CHESTNET_MODEL_PATH": str(tiny_model_path),
        "CHESTNET_REQUEUE_AFTER_S": "2",  # the beat sweep then runs every 5 s
    }


@pytest.fixture(scope="module")
def worker(
    worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen]:
    """One worker (prefork, one child) for the module, on the test database."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    process = start_worker(log=log, env=worker_env)
    yield process
    stop_worker(process)


@pytest.fixture(scope="module")
def training_worker(
    worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen]:
    """A training worker like `make run`'s (tests.support.datasets.start_training_worker),
    with a work folder of its own, for the module."""
    from tests.support.datasets import start_training_worker

    folder = tmp_path_factory.mktemp("training-worker")
    env = {**worker_env, "CHESTNET_TRAINING_WORK_DIR": str(folder / "work")}
    process = start_training_worker(log=folder / "worker.log", env=env)
    yield process
    stop_worker(process)


@pytest.fixture
def workers(
    worker_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start workers of the test's own: `workers(beat=True, SOME_SETTING="1")` (and `app=`
    for another Celery app module); each is
    stopped (or killed) when the test ends."""
    started: list[subprocess.Popen] = []

    def start(*, beat: bool = False, app: str = "chestnet_site", **env: str) -> subprocess.Popen:
        log = tmp_path / f"worker-{len(started) + 1}.log"
        schedule = tmp_path / "celerybeat-schedule" if beat else None
        process = start_worker(log=log, env={**worker_env, **env}, beat_schedule=schedule, app=app)
        started.append(process)
        return process

    yield start
    for process in started:
        stop_worker(process)


def wait_for(predicate: Callable[[], T], *, timeout: float = 180, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting")


@pytest.fixture
def wait() -> Callable[..., Any]:
    return wait_for
