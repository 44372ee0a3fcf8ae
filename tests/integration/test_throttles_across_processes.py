"""The throttles with two web processes: two gunicorn processes on the test database and one
Redis, as a deployment runs WEB_CONCURRENCY of them. Anonymous login attempts spread over
both (and sent eight at a time) meet one anonymous rate, not one per process; the login
lockout counts the failures made at either.

Each run sends from client addresses of its own (X-Forwarded-For behind one proxy), so runs
sharing a Redis database (CI, a colleague) never count each other's attempts."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from accounts import roles
from devtools.ports import free_port
from devtools.processes import stop_process
from tests.support import factories
from tests.support.factories import TEST_PASSWORD
from tests.support.stack import database_url

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
RATE = 20  # anonymous requests per minute and client address
ATTEMPTS = 200
FAILURE_LIMIT = 5
TOKEN_URL = "/api/v1/auth/token/"


def _address() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def _start_web(port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "gunicorn", "chestnet_site.wsgi", "--bind"]
    command += [f"127.0.0.1:{port}", "--workers", "1", "--threads", "4"]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_until_serving(base: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{base}/accounts/login/", timeout=5).close()
            return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"gunicorn did not answer:\n{log.read_text()[-3000:]}")


@pytest.fixture
def web(redis_url: str, tmp_path: Path) -> Iterator[list[str]]:
    """Two web processes sharing the test database and Redis; their base URLs."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "CHESTNET_HOME": str(tmp_path / "home"),
        "CHESTNET_API_ANON_RATE_PER_MIN": str(RATE),
        "CHESTNET_LOGIN_FAILURE_LIMIT": str(FAILURE_LIMIT),
        "CHESTNET_PROXY_COUNT": "1",
    }
    started = []
    for n in (1, 2):
        log = tmp_path / f"web-{n}.log"
        port = free_port()
        started.append((f"http://127.0.0.1:{port}", _start_web(port, env, log), log))
    try:
        for base, process, log in started:
            _wait_until_serving(base, process, log)
        yield [base for base, _, _ in started]
    finally:
        for _, process, _ in started:
            stop_process(process, timeout=10)


def _token_login(base: str, username: str, password: str, address: str) -> tuple[int, str]:
    """POST to the token endpoint: (status, Retry-After)."""
    request = urllib.request.Request(
        f"{base}{TOKEN_URL}",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json", "X-Forwarded-For": address},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers.get("Retry-After", "")
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers.get("Retry-After", "")


def test_two_hundred_anonymous_logins_over_two_processes_meet_one_rate(web):
    address = _address()

    def attempt(n: int) -> tuple[str, int, str]:
        base = web[n % 2]
        status, retry_after = _token_login(base, f"nobody-{n}", "guess", address)
        return base, status, retry_after

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(attempt, range(ATTEMPTS)))

    through = Counter(base for base, status, _ in results if status != 429)
    assert {status for _, status, _ in results} == {400, 429}  # wrong password, or throttled
    assert sum(through.values()) == RATE, through
    assert set(through) == set(web), f"one process took every counted attempt: {through}"
    retry_after = [int(after) for _, status, after in results if status == 429]
    assert len(retry_after) == ATTEMPTS - RATE and all(0 < s <= 60 for s in retry_after)


def test_the_lockout_counts_the_failures_made_at_either_process(web):
    factories.UserFactory(username="two-process-user", role=roles.CLINICIAN)
    address = _address()
    statuses = [
        _token_login(web[n % 2], "two-process-user", f"wrong-{n}", address)[0]
        for n in range(FAILURE_LIMIT + 1)
    ]
    # Neither process saw FAILURE_LIMIT failures itself (three at one, two at the other).
    assert statuses == [400] * (FAILURE_LIMIT - 1) + [429, 429]
    # The right password is refused at both while the lock holds.
    right = [_token_login(base, "two-process-user", TEST_PASSWORD, address)[0] for base in web]
    assert right == [429, 429]
