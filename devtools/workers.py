"""Celery workers started as separate processes, as `make run` and a worker host start
them: for the tests that run the real stack and for the benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devtools.processes import stop_process

ROOT = Path(__file__).resolve().parents[1]


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
    host: devtools.netns), so the process group is still the worker's."""
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
            raise RuntimeError(f"Celery worker exited:\n{log.read_text()[-3000:]}")
        if b"ready." in log.read_bytes():
            return
        time.sleep(0.3)
    kill_worker(process)
    raise RuntimeError(f"Celery worker did not start:\n{log.read_text()[-3000:]}")


def kill_worker(process: subprocess.Popen) -> None:
    """SIGKILL the worker's parent and children at once, as a machine crash would."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def stop_worker(process: subprocess.Popen, timeout: float = 20) -> None:
    """Warm shutdown, then SIGKILL to whatever is left of its process group."""
    stop_process(process, timeout=timeout, group=True)
