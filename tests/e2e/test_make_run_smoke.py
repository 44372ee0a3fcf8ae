"""`make run` as a newcomer uses it: no DATABASE_URL or REDIS_URL (SQLite and the Redis it
starts itself), the shipped model, a real radiograph uploaded in a real Chromium; stopping it
leaves no process behind. This is CI's check of the embedded-default path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

from devtools.ports import free_port
from tests.support.processes import Process, processes_of, wait_for_exit

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
UNSET = ("DATABASE_URL", "REDIS_URL", "CHESTNET_MODEL_PATH", "PORT", "DEBUG")


def test_make_run_analyses_an_uploaded_radiograph_and_stops_everything_on_sigterm(
    login, radiograph_set, tmp_path, request
):
    model_env, model_version = _model(request)
    port, home = free_port(), tmp_path / "home"
    started: set[Process] = set()
    env = {key: value for key, value in os.environ.items() if key not in UNSET}
    env.update(CHESTNET_HOME=str(home), PORT=str(port), **model_env)
    env.update(CHESTNET_DICOM_PORT=str(free_port()))
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        make = subprocess.Popen(
            ["make", "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        health = _wait_until_healthy(port, make, log)
        assert (health["status"], health["database"], health["broker"]) == ("ok", "ok", "ok")
        assert health["dicom_listener"] == "ok"
        started = processes_of(make.pid, home)
        assert {"redis-server", "celery", "gunicorn"} <= {p[2] for p in started}, started

        page = login(f"http://127.0.0.1:{port}", "clinician", "chestnet-demo")
        page.goto(f"http://127.0.0.1:{port}/cases/new/")
        radiograph = sorted((radiograph_set / "chest_xray/train/PNEUMONIA").glob("*.jpeg"))[0]
        page.set_input_files("input[name=images]", str(radiograph))
        with page.expect_navigation(url="**/cases/*/"):
            page.click("#case-form button[type=submit]")
        page.wait_for_selector("#case-status.awaiting_review", timeout=300_000)
        page.wait_for_selector("[data-heatmap]:not([hidden])")
        result = page.inner_text("[data-result]")
        assert f"model {model_version}" in result and "P(pneumonia)" in result
    finally:
        started |= processes_of(make.pid, home)
        make.send_signal(signal.SIGTERM)  # make passes it on to the runner and waits
        try:
            make.wait(90)
        except subprocess.TimeoutExpired:
            pass
        survivors = wait_for_exit(started, home, timeout=15)
        for pid, _, _ in survivors:  # leave nothing running for the tests after this one
            os.kill(pid, signal.SIGKILL)
    assert make.returncode is not None, "make run did not stop within 90 s of SIGTERM"
    assert not survivors, f"still running after SIGTERM: {survivors}\n{_tail(log)}"
    assert "Started Redis" in log.read_text()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


def _model(request) -> tuple[dict[str, str], str]:
    """The shipped default artifact; until it is committed, a tiny one, said loudly."""
    from ml.artifact import DEFAULT_ARTIFACT, read_card

    if DEFAULT_ARTIFACT.exists():
        return {}, read_card(DEFAULT_ARTIFACT, verify=False)["version"]
    warnings.warn(
        f"{DEFAULT_ARTIFACT.name} is missing: the smoke test ran on a tiny untrained model",
        stacklevel=2,
    )
    tiny = request.getfixturevalue("tiny_model_path")
    return {"CHESTNET_MODEL_PATH": str(tiny)}, read_card(tiny)["version"]


def _wait_until_healthy(port: int, make: subprocess.Popen, log: Path, timeout=300) -> dict:
    """/healthz reporting the database, the broker and one worker."""
    deadline, health = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        assert make.poll() is None, f"make run exited with {make.returncode}:\n{_tail(log)}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
                health = json.loads(reply.read())
        except OSError:
            health = None
        if health and health.get("workers") and health.get("dicom_listener") == "ok":
            return health
        time.sleep(1)
    raise AssertionError(f"make run never became healthy (last: {health}):\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]
