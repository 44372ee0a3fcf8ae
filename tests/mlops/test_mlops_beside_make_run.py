from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _broker_seen_by_a_command(home: Path, **extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(CHESTNET_HOME=str(home), DJANGO_SETTINGS_MODULE="chestnet_site.settings", **extra)
    code = (
        "import django; django.setup(); from django.conf import settings; print(settings.REDIS_URL)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_commands_given_make_runs_home_use_its_private_broker(tmp_path):
    (tmp_path / "redis").mkdir()
    (tmp_path / "redis" / "url").write_text("redis://127.0.0.1:45678/0\n")
    assert _broker_seen_by_a_command(tmp_path) == "redis://127.0.0.1:45678/0"
    assert _broker_seen_by_a_command(tmp_path, REDIS_URL="redis://other:6379/1") == (
        "redis://other:6379/1"
    )
    assert _broker_seen_by_a_command(tmp_path / "fresh") == "redis://127.0.0.1:6379/0"
