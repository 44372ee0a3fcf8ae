"""Production refuses what is weak: a SECRET_KEY estimated below 256 bits of entropy,
`*` in ALLOWED_HOSTS, and (the web process) any warning of `check --deploy`."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management.utils import get_random_secret_key

from chestnet_site.secret_key import MIN_BITS, estimated_bits

ROOT = Path(__file__).resolve().parents[1]
STRONG_KEY = secrets.token_urlsafe(50)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("abcde" * 10, id="abcde-ten-times"),
        pytest.param("password" * 7, id="password-seven-times"),
        pytest.param("Tr0ub4dor&3" * 6, id="a-strong-looking-word-repeated"),
        pytest.param("qwhfkdjsalzmxncbvpoiuytrewqasdfghjklmnbvcxzpoiuytr", id="50-lowercase"),
        pytest.param("7" * 64, id="one-character"),
        pytest.param("replace-with-a-long-random-string", id="the-env-example-placeholder"),
        pytest.param("", id="empty"),
    ],
)
def test_a_short_narrow_or_repeated_key_is_estimated_weak(key):
    assert estimated_bits(key) < MIN_BITS


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(get_random_secret_key, id="django-get-random-secret-key"),
        pytest.param(lambda: secrets.token_hex(32), id="openssl-rand-hex-32"),
        pytest.param(
            lambda: base64.b64encode(os.urandom(32)).decode(), id="openssl-rand-base64-32"
        ),
        pytest.param(lambda: secrets.token_urlsafe(50), id="token-urlsafe-50"),
    ],
)
def test_what_the_usual_generators_make_is_strong_enough(make):
    assert all(estimated_bits(make()) >= MIN_BITS for _ in range(200))


def _run(command: list[str], **extra: str) -> subprocess.CompletedProcess:
    unset = ("SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "CHESTNET_ENV", "SECURE_HSTS_SECONDS")
    environment = {k: v for k, v in os.environ.items() if k not in unset}
    environment.update(extra)
    return subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


def _production(*args: str, **extra: str) -> subprocess.CompletedProcess:
    settings = {"CHESTNET_ENV": "production", "ALLOWED_HOSTS": "chestnet.example.org"}
    return _run([sys.executable, "manage.py", *args], **{**settings, **extra})


@pytest.mark.slow
@pytest.mark.parametrize("key", ["abcde" * 10, "password" * 7])
def test_production_refuses_a_weak_key_and_says_how_to_make_one(key, tmp_path):
    result = _production("check", "--deploy", SECRET_KEY=key, CHESTNET_HOME=str(tmp_path))
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "SECRET_KEY is a placeholder or too weak" in message and "256 bits" in message
    assert 'python3 -c "import secrets; print(secrets.token_urlsafe(50))"' in message


@pytest.mark.slow
@pytest.mark.parametrize("hosts", ["*", "chestnet.example.org,*", "*.example.org"])
def test_production_refuses_a_wildcard_host(hosts, tmp_path):
    result = _production(
        "check", SECRET_KEY=STRONG_KEY, ALLOWED_HOSTS=hosts, CHESTNET_HOME=str(tmp_path)
    )
    assert result.returncode != 0 and "ALLOWED_HOSTS may not contain '*'" in result.stderr


@pytest.mark.slow
def test_a_generated_key_passes_check_deploy_at_warning(tmp_path):
    key = secrets.token_hex(32)
    result = _production(
        "check", "--deploy", "--fail-level", "WARNING", SECRET_KEY=key, CHESTNET_HOME=str(tmp_path)
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_the_web_process_starts_only_without_deploy_warnings(tmp_path):
    """gunicorn imports chestnet_site.wsgi, which in production runs `check --deploy` at
    WARNING: HSTS turned off (security.W004) stops the worker, and gunicorn with it."""
    production = {
        "CHESTNET_ENV": "production",
        "ALLOWED_HOSTS": "chestnet.example.org",
        "SECRET_KEY": STRONG_KEY,
        "CHESTNET_HOME": str(tmp_path),
    }
    loads = _run([sys.executable, "-c", "import chestnet_site.wsgi"], **production)
    assert loads.returncode == 0, loads.stderr

    command = [sys.executable, "-m", "gunicorn", "chestnet_site.wsgi", "--bind", "127.0.0.1:0"]
    refused = _run(command, **production, SECURE_HSTS_SECONDS="0")
    assert refused.returncode != 0
    assert "security.W004" in refused.stderr and "Worker failed to boot" in refused.stderr
