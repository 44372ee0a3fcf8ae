"""CHESTNET_STORAGE and the AWS_* variables, read as a process starting up reads them: each
case runs the settings in a fresh Python process with that environment (nothing connects to
an object store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
S3 = {
    "CHESTNET_STORAGE": "s3",
    "AWS_S3_ENDPOINT_URL": "http://objects.example.internal:8333",
    "AWS_STORAGE_BUCKET_NAME": "chestnet",
    "AWS_ACCESS_KEY_ID": "chestnet-web",
    "AWS_SECRET_ACCESS_KEY": "not-a-real-secret",
}
# Prints what the default storage became. PROBE_WITHOUT_BOTOCORE: as if boto3 were not
# installed.
PROBE = """
import json, os, sys
if os.environ.get("PROBE_WITHOUT_BOTOCORE"):
    sys.modules["botocore"] = None
import django
django.setup()
from django.conf import settings
from django.core.files.storage import default_storage
default = settings.STORAGES["default"]
config = getattr(default_storage, "client_config", None)
print(json.dumps({
    "backend": default["BACKEND"],
    "storage": default_storage.__class__.__name__,
    "options": {k: v for k, v in default.get("OPTIONS", {}).items() if k != "client_config"},
    "config": config and {
        "s3": config.s3,
        "connect_timeout": config.connect_timeout,
        "read_timeout": config.read_timeout,
        "retries": config.retries,
    },
}))
"""


def _start(tmp_path: Path, env: dict[str, str], *, block_botocore: bool = False):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHESTNET_STORAGE"))}
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "chestnet_site.settings",
            "CHESTNET_HOME": str(tmp_path),
            "PYTHONPATH": str(ROOT),
            **({"PROBE_WITHOUT_BOTOCORE": "1"} if block_botocore else {}),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def _started(tmp_path: Path, env: dict[str, str], **kwargs) -> dict:
    result = _start(tmp_path, env, **kwargs)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.splitlines()[-1])


def _refused(tmp_path: Path, env: dict[str, str]) -> str:
    result = _start(tmp_path, env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_by_default_files_stay_under_media_root_without_needing_boto3(tmp_path):
    started = _started(tmp_path, {}, block_botocore=True)
    assert started["backend"] == "chestnet_site.storage.FileSystemStorage"
    assert started["storage"] == "FileSystemStorage"


def test_s3_stores_in_a_private_bucket_with_bounded_waits(tmp_path):
    started = _started(tmp_path, S3)
    assert started["storage"] == "S3Storage"
    options = started["options"]
    assert options["endpoint_url"] == S3["AWS_S3_ENDPOINT_URL"]
    assert options["bucket_name"] == "chestnet"
    assert (options["access_key"], options["secret_key"]) == ("chestnet-web", "not-a-real-secret")
    # No public objects, no signed links that would bypass ChestNet's access checks, and
    # never a file overwritten by another of the same name.
    assert options["default_acl"] is None and options["querystring_auth"] is False
    assert options["file_overwrite"] is False
    assert 0 < options["max_memory_size"] <= 10 * 1024 * 1024
    config = started["config"]
    assert config["s3"] == {"addressing_style": "path"}
    assert config["connect_timeout"] <= 10 and config["read_timeout"] <= 60
    assert config["retries"]["max_attempts"] > 1


def test_the_region_and_addressing_style_can_be_chosen(tmp_path):
    env = {**S3, "AWS_S3_REGION_NAME": "eu-central-1", "AWS_S3_ADDRESSING_STYLE": "virtual"}
    started = _started(tmp_path, env)
    assert started["options"]["region_name"] == "eu-central-1"
    assert started["config"]["s3"] == {"addressing_style": "virtual"}


@pytest.mark.parametrize("missing", ["AWS_S3_ENDPOINT_URL", "AWS_SECRET_ACCESS_KEY"])
def test_s3_without_a_required_variable_refuses_to_start_and_names_it(tmp_path, missing):
    env = {name: value for name, value in S3.items() if name != missing}
    message = _refused(tmp_path, env)
    assert f"CHESTNET_STORAGE=s3 needs {missing}" in message


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("CHESTNET_STORAGE", "nfs", "CHESTNET_STORAGE must be one of local, s3; got 'nfs'"),
        ("AWS_S3_ENDPOINT_URL", "objects:8333", "AWS_S3_ENDPOINT_URL must read http(s)://"),
        ("AWS_S3_ADDRESSING_STYLE", "dns", "AWS_S3_ADDRESSING_STYLE must be one of path"),
    ],
)
def test_a_malformed_storage_variable_refuses_to_start(tmp_path, name, value, says):
    assert says in _refused(tmp_path, {**S3, name: value})
