"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Redis, Celery worker processes and shared media for tests/integration and tests/e2e.
pytest_plugins = ["diagnosis.testing.stack"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CHESTNET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "MANIFEST.csv").exists():
        pytest.fail(f"Shared radiographs not found at {SHARED_DATA} (set CHESTNET_SHARED_DATA).")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A small, untrained but complete artifact (.keras + card): fast to load and run."""
    from ml.testing import write_tiny_artifact

    return write_tiny_artifact(tmp_path_factory.mktemp("tiny-model") / "tiny.keras")
