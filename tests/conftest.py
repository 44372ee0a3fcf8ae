"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from accounts import roles

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Redis, Celery worker processes and shared media for tests/integration and tests/e2e; an
# S3-compatible object store (the `seaweedfs` fixture).
pytest_plugins = ["tests.support.stack", "tests.support.seaweedfs"]


@pytest.fixture(scope="session", autouse=True)
def _flush_outlasts_a_deadlock():
    """A transactional test ends by emptying every table (TRUNCATE on PostgreSQL). A real
    worker's beat sweep (tests/integration) may hold row locks in the other order at that
    moment; PostgreSQL then breaks the deadlock by failing one side. When it fails the
    flush, the sweep's transaction has ended, so the flush is simply run again."""
    import time

    from django.core.management.base import CommandError
    from django.test import TransactionTestCase

    teardown = TransactionTestCase._fixture_teardown

    def patient_teardown(self):
        for attempt in range(3):
            try:
                return teardown(self)
            except CommandError as exc:
                if attempt == 2 or "deadlock detected" not in str(exc.__cause__):
                    raise
                time.sleep(0.5)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TransactionTestCase, "_fixture_teardown", patient_teardown)
        yield


@pytest.fixture(autouse=True)
def _cache_of_its_own(settings):
    """The API's rate counts live in the cache: in Redis when REDIS_URL is set, which other
    runs on the same database (CI, a colleague) share. Each test counts under a key prefix
    of its own, so it starts with nothing counted; nothing is ever flushed (cache.clear() is
    FLUSHDB, which would empty the broker's queues too)."""
    settings.CACHES = {
        name: {**config, "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
        for name, config in settings.CACHES.items()
    }


@pytest.fixture(scope="session")
def radiograph_set() -> Path:
    """Real radiographs: the fixture set in tests/data/radiographs, or the full data set
    when CHESTNET_SHARED_DATA names it (tests.support.radiographs)."""
    from tests.support.radiographs import radiographs_root

    root = radiographs_root()
    if not (root / "MANIFEST.csv").exists():
        pytest.fail(f"No MANIFEST.csv in {root} (the fixture set, or CHESTNET_SHARED_DATA if set).")
    return root


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A small, untrained but complete artifact (.keras + card): fast to load and run."""
    from devtools.tiny_artifact import write_tiny_artifact

    return write_tiny_artifact(tmp_path_factory.mktemp("tiny-model") / "tiny.keras")


# Personas shared by the web app's and the mlops tests. Each package defines its own
# `admin_user`: the web app's is a superuser (Django admin), mlops's only holds the role.


def _persona(username: str, role: str):
    """A fixture: the user `username`, in the group `role`, made for the test."""

    @pytest.fixture
    def persona(db):
        from tests.support import factories

        return factories.UserFactory(username=username, role=role)

    return persona


clinician = _persona("dr-clinician", roles.CLINICIAN)
clinician2 = _persona("dr-clinician2", roles.CLINICIAN)
radiologist = _persona("dr-radiologist", roles.RADIOLOGIST)
radiologist2 = _persona("dr-radiologist2", roles.RADIOLOGIST)


@pytest.fixture
def api_client_for():
    """`api_client_for(user)`: a DRF client authenticated as `user` (None: anonymous)."""
    from rest_framework.test import APIClient

    def login(user=None):
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return login


@pytest.fixture
def client_for(client):
    """`client_for(user)`: the test client, logged in as `user`."""

    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture(scope="session")
def gated_ensemble_path(tmp_path_factory, radiograph_set) -> Path:
    """Two tiny members trained for one epoch on a small held-out-batch split, joined by
    `ml.ensemble.combine`: a complete artifact with calibration, spread and a fitted gate."""
    from ml.ensemble import combine
    from ml.train import resolve_config, train

    folder = tmp_path_factory.mktemp("gated-ensemble")
    members = []
    for seed in (1, 2):
        config = resolve_config(
            None,
            {
                "data_root": str(radiograph_set),
                "output": str(folder / f"member{seed}.keras"),
                "epochs": 1,
                "seed": seed,
                "limit_per_class": 40,
                "cache_dir": "",
                "version": f"tiny-member-{seed}",
                "model.image_size": 64,
                "model.width": 16,
                "model.stages": 2,
            },
        )
        train(config, command="test", verbose=0)
        members.append(Path(config.output))
    output = folder / "ensemble.keras"
    combine(members, output=output, version="tiny-ensemble", command="test")
    return output
