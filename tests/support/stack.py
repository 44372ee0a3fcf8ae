"""pytest plugin for tests that run the real stack: Redis, Celery worker processes and the
test database and media folder they share with the test process. Registered in
tests/conftest.py; used by tests/integration and tests/e2e.

With REDIS_URL/DATABASE_URL set (CI: PostgreSQL and Redis on this machine) they are used;
without, a private Redis is started and the SQLite test database file is shared."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest

from chestnet_site.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
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
    from chestnet_site import local_redis

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
        from chestnet_site import local_redis

        self.directory, self.port = directory, local_redis.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        from chestnet_site import local_redis

        self.process, _ = local_redis.start_redis(self.directory, port=self.port)

    def stop(self) -> None:
        from chestnet_site import local_redis

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


def start_worker(
    *,
    log: Path,
    env: dict[str, str],
    beat_schedule: Path | None = None,
    queues: str = "inference,celery",
    max_tasks_per_child: int | None = None,
    app: str = "chestnet_site",
    prefix: list[str] | None = None,
) -> subprocess.Popen:
    """A prefork worker with one child (plus the requeue beat if `beat_schedule` is given),
    in its own process group; returns once it is ready to consume. `app` is the Celery app
    module: the product's, or a test's wrapper of it (tests.support.slow_inference).
    `prefix` runs it through a command that execs it, e.g. `ip netns exec NS` (another
    host: tests.support.netns), so the process group is still the worker's."""
    command = [*(prefix or []), sys.executable, "-m", "celery", "-A", app, "worker"]
    command += ["-Q", queues, "--concurrency", "1", "--loglevel", "INFO"]
    name = f"it-{os.getpid()}-{queues.split(',')[0]}-{log.stem}@%h"
    command += ["--without-gossip", "--without-mingle", "-n", name]
    if max_tasks_per_child is not None:
        command += ["--max-tasks-per-child", str(max_tasks_per_child)]
    if beat_schedule is not None:
        command += ["-B", "--schedule", str(beat_schedule)]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _wait_for_ready(process, log)
    return process


def _wait_for_ready(process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"Celery worker exited:\n{log.read_text()[-3000:]}")
        if b"ready." in log.read_bytes():
            return
        time.sleep(0.3)
    kill_worker(process)
    pytest.fail(f"Celery worker did not start:\n{log.read_text()[-3000:]}")


def kill_worker(process: subprocess.Popen) -> None:
    """SIGKILL the worker's parent and children at once, as a machine crash would."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def stop_worker(process: subprocess.Popen, timeout: float = 20) -> None:
    """Warm shutdown, then SIGKILL to whatever is left of its process group."""
    stop_process(process, timeout=timeout, group=True)


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
