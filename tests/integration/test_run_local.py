"""`make run`'s runner: starts Redis, migrates, seeds demo users, serves, and stops it all;
keeps its children running (a killed one is started again, Redis with its queue) and leaves
none behind, even killed outright."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import NamedTuple, TypeVar
from urllib.parse import urlsplit

import pytest

from devtools.ports import free_port, free_ports
from tests.support.processes import Process, children, processes_of, wait_for_exit

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


class Stack(NamedTuple):
    port: int
    env: dict[str, str]
    health: dict
    runner: subprocess.Popen


def _start_runner(
    home: Path, log: Path, *, dicom_port: int | None = None
) -> tuple[subprocess.Popen, int, dict[str, str]]:
    """`make run`'s runner on embedded defaults (SQLite, its own Redis)."""
    port, spare = free_ports(2)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    dicom = str(dicom_port or spare)
    env.update(CHESTNET_HOME=str(home), PORT=str(port), CHESTNET_DICOM_PORT=dicom)
    with log.open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "scripts/run_local.py"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return runner, port, env


@contextmanager
def _local_stack(home: Path, log: Path, *, workers: int = 0) -> Iterator[Stack]:
    """The runner, once healthy (and `workers` Celery workers answer), and asserts it stops
    cleanly on SIGTERM."""
    runner, port, env = _start_runner(home, log)
    try:
        yield Stack(port, env, _wait_for_health(port, runner, workers=workers), runner)
    finally:
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(60) == 0


def test_run_local_serves_and_stops_everything_on_sigterm(tmp_path):
    with _local_stack(tmp_path, tmp_path / "run.log") as stack:
        assert stack.health["database"] == "ok" and stack.health["broker"] == "ok"
        assert stack.health["dicom_listener"] == "ok"  # it answered a C-ECHO
        output = (tmp_path / "run.log").read_text()
        assert f"http://127.0.0.1:{stack.port}/" in output and "chestnet-demo" in output
    assert (tmp_path / "chestnet.sqlite3").exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{stack.port}/healthz", timeout=2)


def _wait_for_health(
    port: int,
    runner: subprocess.Popen,
    *,
    workers: int = 0,
    timeout: float = 120,
    listener: str = "ok",
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert runner.poll() is None, "runner exited early"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
                health = json.loads(response.read())
            if health["workers"] >= workers and health["dicom_listener"] == listener:
                return health
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("the local run never became healthy")


def test_a_dicom_port_held_by_another_pacs_is_one_line_and_the_rest_runs_on(tmp_path):
    """dcm4chee, Orthanc or a second ChestNet on the port: the listener says so once and is
    left off; the web app and workers run; /healthz does not mistake the other service's
    C-ECHO answer for our listener."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    other = AE(ae_title="OTHERPACS")
    other.add_supported_context(Verification)
    other.require_called_aet = False  # answers whatever AE title it is called by
    dicom_port = free_port()
    server = other.start_server(("127.0.0.1", dicom_port), block=False)
    log = tmp_path / "run.log"
    runner, port, _env = _start_runner(tmp_path, log, dicom_port=dicom_port)
    try:
        health = _wait_for_health(port, runner, workers=2, listener="unavailable")
        assert health["database"] == "ok" and health["broker"] == "ok"
        time.sleep(3)  # a restart would have come by now (the first is after 1 s)
        assert runner.poll() is None
        output = log.read_text()
        line = f"DICOM listener not started: port {dicom_port} on 127.0.0.1 is in use"
        assert output.count(line) == 1, output
        assert "CHESTNET_DICOM_PORT" in output and "DICOM listener is off" in output
        assert "Traceback" not in output and "Stopping everything" not in output
    finally:
        runner.send_signal(signal.SIGTERM)
        code = runner.wait(60)
        server.shutdown()
    assert code == 0


def test_management_commands_work_beside_a_running_local_stack(tmp_path, radiograph_set):
    """An admin on the server: same CHESTNET_HOME, no URLs. The import lands in the running
    stack's database and the training run is executed by its training worker."""
    import shutil

    folder = tmp_path / "incoming"
    manifest = sorted((radiograph_set / "chest_xray/train").glob("*/*.jpeg"))
    for split, count in (("train", 10), ("val", 3), ("test", 2)):
        for label in ("NORMAL", "PNEUMONIA"):
            (folder / split / label).mkdir(parents=True)
            picks = [p for p in manifest if p.parent.name == label]
            offset = {"train": 0, "val": 10, "test": 13}[split]
            for path in picks[offset : offset + count]:
                shutil.copy(path, folder / split / label / path.name)
    with _local_stack(tmp_path / "home", tmp_path / "run.log") as stack:

        def manage(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "manage.py", *args],
                cwd=ROOT,
                env=stack.env,
                capture_output=True,
                text=True,
                timeout=300,
            )

        imported = manage("import_dataset", "beside", str(folder))
        assert imported.returncode == 0, imported.stderr
        tiny = ["--epochs", "1", "--image-size", "64", "--width", "16", "--stages", "2"]
        trained = manage("train_model", "--dataset", "beside", *tiny, "--timeout", "240")
        assert trained.returncode == 0, trained.stderr
        version = trained.stdout.strip().splitlines()[-1]
        reason = "a tiny model, to check the commands beside make run"
        activated = manage("activate_model", version, "--override-reason", reason)
        assert activated.returncode == 0, activated.stderr
        shown = manage(
            "shell",
            "-c",
            "from registry.selectors import active_model; print(active_model().version)",
        )
        assert shown.stdout.strip().splitlines()[-1] == version


def test_killed_children_are_started_again_and_redis_keeps_the_queued_task(tmp_path):
    """Redis, the web server and a worker SIGKILLed under the runner come back; the task
    queued before Redis died is still queued, on the same URL, and runs."""
    home, log = tmp_path / "home", tmp_path / "run.log"
    with _local_stack(home, log, workers=2) as stack:
        runner, url = stack.runner.pid, (home / "redis" / "url").read_text().strip()
        worker = _one(children(runner), "inference,celery")
        assert worker, "no inference worker"  # killpg(0) would stop this test's own group
        os.killpg(worker, signal.SIGSTOP)  # the inference worker and its pool: no consumer
        try:
            time.sleep(2)  # its pending BRPOP (1 s) returns empty: nothing takes the task now
            task_id = _publish(url, "mlops.tasks.feedback_pull_task", queue="celery")
            assert _queued(url, task_id)
            _killed_and_started_again(runner, "redis-server")
            assert _wait(lambda: _queued(url, task_id)), "the restarted Redis lost the task"
        finally:
            os.killpg(worker, signal.SIGCONT)
        succeeded = f"mlops.tasks.feedback_pull_task[{task_id}] succeeded"
        assert _wait(lambda: succeeded in log.read_text(), timeout=90), _tail(log)
        _killed_and_started_again(runner, "gunicorn")
        _killed_and_started_again(runner, "-Q training")
        assert _wait_for_health(stack.port, stack.runner, workers=2)["broker"] == "ok"
        output = log.read_text()
        for name in ("Redis", "web", "training worker"):
            assert re.search(rf"{name} exited with code -9; starting it again in \d+ s", output)


def test_killing_the_runner_outright_leaves_no_process_behind(tmp_path):
    home, log = tmp_path / "home", tmp_path / "run.log"
    runner, port, _env = _start_runner(home, log)
    started: set[Process] = set()
    try:
        _wait_for_health(port, runner, workers=2)
        started = processes_of(runner.pid, home)
        programs = sorted(program for _, _, program in started)
        # Redis, 2 workers with a pool process each, beat, gunicorn with 2 workers.
        assert programs.count("celery") >= 5 and programs.count("gunicorn") == 3, programs
        redis_port = urlsplit((home / "redis" / "url").read_text().strip()).port
        killed_at = time.monotonic()
        runner.kill()
        runner.wait(10)
        left = wait_for_exit(started, home, timeout=10)
        assert not left, f"still running after the runner was killed: {left}"
        assert time.monotonic() - killed_at < 10
        assert redis_port and _port_is_free(port) and _port_is_free(redis_port)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        for pid, _, _ in wait_for_exit(started, home, timeout=0):
            with suppress(ProcessLookupError):  # leave nothing running for the next tests
                os.kill(pid, signal.SIGKILL)


def _one(commands: dict[int, str], marker: str) -> int:
    """The pid of the one child whose command line has `marker`, 0 when there is none."""
    found = [pid for pid, command in commands.items() if marker in command]
    assert len(found) <= 1, found
    return found[0] if found else 0


def _killed_and_started_again(runner: int, marker: str) -> int:
    """SIGKILL the runner's child with `marker` in its command line; returns its successor."""
    before = _one(children(runner), marker)
    assert before, f"no child {marker!r}"
    os.kill(before, signal.SIGKILL)
    after = _wait(lambda: _one(children(runner), marker) not in (before, 0))
    assert after, f"{marker!r} was not started again"
    return _one(children(runner), marker)


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --- the broker -----------------------------------------------------------------------


def _publish(url: str, task: str, *, queue: str) -> str:
    from celery import Celery

    app, task_id = Celery(broker=url), str(uuid.uuid4())
    try:
        app.send_task(task, task_id=task_id, queue=queue)
    finally:
        app.close()
    return task_id


def _queued(url: str, task_id: str) -> bool:
    """Whether a message for this task waits in one of the queues (Redis lists)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        messages = [
            m
            for key in client.keys("*")
            if client.type(key) == b"list"
            for m in client.lrange(key, 0, -1)
        ]
    except redis.ConnectionError:
        return False
    finally:
        client.close()
    return any(task_id.encode() in message for message in messages)


def _wait(condition: Callable[[], T], timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(0.3)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]
