from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from chestnet_site import env

ROOT = Path(__file__).resolve().parents[2]


def test_env_int_rejects_garbage(monkeypatch):
    monkeypatch.setenv("CHESTNET_MAX_UPLOAD_MB", "lots")
    with pytest.raises(ImproperlyConfigured, match="CHESTNET_MAX_UPLOAD_MB must be an integer"):
        env.env_int("CHESTNET_MAX_UPLOAD_MB", 50)


def test_env_bool_and_list(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured):
        env.env_bool("DEBUG")
    monkeypatch.setenv("ALLOWED_HOSTS", "a.example, b.example")
    assert env.env_list("ALLOWED_HOSTS") == ["a.example", "b.example"]


def _manage(*args: str, **extra: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    environment.update(extra)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_production_refuses_to_start_without_secret_key():
    result = _manage("check", CHESTNET_ENV="production")
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


@pytest.mark.slow
def test_production_settings_pass_check_deploy(tmp_path):
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        CHESTNET_ENV="production",
        SECRET_KEY="x" * 20 + "a-long-random-production-secret-key-123456",
        ALLOWED_HOSTS="chestnet.example.org",
        CHESTNET_HOME=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
