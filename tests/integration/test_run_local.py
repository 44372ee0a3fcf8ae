"""`make run`'s runner: starts Redis, migrates, seeds demo users, serves, and stops it all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from chestnet_site.local_redis import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def _local_stack(home: Path, log: Path) -> Iterator[tuple[int, dict[str, str], dict]]:
    """`make run`'s runner on embedded defaults; yields (port, its environment, /healthz)
    once healthy, and asserts it stops cleanly on SIGTERM."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(CHESTNET_HOME=str(home), PORT=str(port))
    with log.open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "scripts/run_local.py"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield port, env, _wait_for_health(port, runner)
    finally:
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(60) == 0


def test_run_local_serves_and_stops_everything_on_sigterm(tmp_path):
    with _local_stack(tmp_path, tmp_path / "run.log") as (port, _env, health):
        assert health["database"] == "ok" and health["broker"] == "ok"
        output = (tmp_path / "run.log").read_text()
        assert f"http://127.0.0.1:{port}/" in output and "chestnet-demo" in output
    assert (tmp_path / "chestnet.sqlite3").exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


def _wait_for_health(port: int, runner: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert runner.poll() is None, "runner exited early"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the local run never became healthy")


def test_management_commands_work_beside_a_running_local_stack(tmp_path, shared_data):
    """An admin on the server: same CHESTNET_HOME, no URLs. The import lands in the running
    stack's database and the training run is executed by its training worker."""
    import shutil

    folder = tmp_path / "incoming"
    manifest = sorted((shared_data / "chest_xray/train").glob("*/*.jpeg"))
    for split, count in (("train", 10), ("val", 3), ("test", 2)):
        for label in ("NORMAL", "PNEUMONIA"):
            (folder / split / label).mkdir(parents=True)
            picks = [p for p in manifest if p.parent.name == label]
            offset = {"train": 0, "val": 10, "test": 13}[split]
            for path in picks[offset : offset + count]:
                shutil.copy(path, folder / split / label / path.name)
    with _local_stack(tmp_path / "home", tmp_path / "run.log") as (_port, env, _health):

        def manage(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "manage.py", *args],
                cwd=ROOT,
                env=env,
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
        activated = manage("activate_model", version)
        assert activated.returncode == 0, activated.stderr
        shown = manage(
            "shell",
            "-c",
            "from registry.selectors import active_model; print(active_model().version)",
        )
        assert shown.stdout.strip().splitlines()[-1] == version
