from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from chestnet_site import env
from diagnosis import services

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = "x" * 20 + "a-long-random-production-secret-key-123456"


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
    unset = ("SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "CHESTNET_ENV")
    environment = {k: v for k, v in os.environ.items() if k not in unset}
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
@pytest.mark.parametrize(
    "changed",
    [{}, {"SECURE_SSL_REDIRECT": "0"}],
    ids=["as shipped", "the https redirect turned off on purpose"],
)
def test_production_settings_pass_check_deploy(tmp_path, changed):
    production = {
        "CHESTNET_ENV": "production",
        "SECRET_KEY": STRONG_KEY,
        "ALLOWED_HOSTS": "chestnet.example.org",
        "CHESTNET_HOME": str(tmp_path),
    }
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **production, **changed)
    assert result.returncode == 0, result.stderr


def _env_example_secret_key() -> str:
    text = (ROOT / "docker" / ".env.example").read_text()
    return re.search(r"^SECRET_KEY=(.*)$", text, flags=re.MULTILINE).group(1)


@pytest.mark.slow
def test_production_refuses_debug():
    result = _manage("check", CHESTNET_ENV="production", SECRET_KEY=STRONG_KEY, DEBUG="1")
    assert result.returncode != 0 and "DEBUG must be off" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "key",
    [
        pytest.param(_env_example_secret_key(), id="the-env-example-placeholder"),
        pytest.param("s3cr3t-but-only-thirty-characters", id="short"),
        pytest.param("abcd" * 20, id="few-distinct-characters"),
        pytest.param("django-insecure-" + "k7#p2!x9" * 6, id="django-insecure-prefix"),
    ],
)
def test_production_refuses_a_placeholder_or_weak_secret_key(key):
    result = _manage("check", CHESTNET_ENV="production", SECRET_KEY=key)
    assert result.returncode != 0 and "SECRET_KEY is a placeholder or too weak" in result.stderr


@pytest.mark.slow
def test_debug_pages_are_for_local_host_names_only():
    result = _manage("check", DEBUG="1", ALLOWED_HOSTS="chestnet.example.org")
    assert result.returncode != 0 and "With DEBUG on, ALLOWED_HOSTS may only name" in result.stderr
    assert _manage("check", DEBUG="1").returncode == 0  # `make run`: localhost only


def test_a_killed_workers_image_is_recovered_within_minutes_by_default():
    """A worker killed mid-task: the beat sweep republishes its image once the lease is
    over, and the broker redelivers its unacknowledged message after the visibility
    timeout (tests/integration/test_recovery.py shows both happen)."""
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    sweep_every = settings.CELERY_BEAT_SCHEDULE["requeue-stale-images"]["schedule"]
    restore_every = options["unacked_restore_interval"] * options["unacked_restore_throttle"]
    assert services.PROCESSING_LEASE.total_seconds() + sweep_every <= 4 * 60
    assert options["visibility_timeout"] + restore_every <= 5.5 * 60


def test_a_slow_task_is_not_taken_from_a_live_worker():
    hard_limit, longest_retry_countdown = settings.CELERY_TASK_TIME_LIMIT, 30
    assert services.PROCESSING_LEASE.total_seconds() > hard_limit
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > (
        hard_limit + longest_retry_countdown
    )


def test_publishing_gives_up_quickly_when_the_broker_is_down_or_hung():
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    assert options["socket_timeout"] <= 10 and settings.CELERY_BROKER_CONNECTION_TIMEOUT <= 5
    assert settings.CELERY_TASK_PUBLISH_RETRY_POLICY["max_retries"] <= 1


@pytest.mark.parametrize(
    "variables",
    [
        {"CHESTNET_DICOM_AET": "A-TITLE-OF-SEVENTEEN"},
        {"CHESTNET_DICOM_ALLOWED_AETS": "ORTHANC,BAD\\AE"},
        {"CHESTNET_PACS": "PACS-at-10.0.0.5"},
        {"CHESTNET_PACS": "PACS@10.0.0.5"},
    ],
)
def test_dicom_network_settings_refuse_what_is_not_an_ae_title_or_address(variables):
    done = _manage("check", **variables)
    assert done.returncode != 0 and "ImproperlyConfigured" in done.stderr
