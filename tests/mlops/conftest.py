"""Personas and helpers for the mlops tests (admins manage datasets and models)."""

from __future__ import annotations

import pytest

from accounts import roles
from tests.support import factories


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.CHESTNET_TRAINING_WORK_DIR = tmp_path / "training"
    settings.CHESTNET_MODEL_CACHE = tmp_path / "model-cache"


@pytest.fixture(autouse=True)
def queued(monkeypatch):
    """Unit tests never publish: record what would have been enqueued, by task."""
    from chestnet_site.celery import app

    keys = {
        "mlops.tasks.dataset_import_task": "import",
        "mlops.tasks.training_run_task": "training",
        "mlops.tasks.evaluation_run_task": "evaluation",
        "mlops.tasks.calibration_run_task": "calibration",
        "diagnosis.tasks.inference_run_task": "inference",
    }
    sent: dict[str, list[int]] = {key: [] for key in keys.values()}

    def publish(name, args=None, **kw):
        sent[keys[name]].append(args[0])

    monkeypatch.setattr(app, "send_task", publish)
    return sent


@pytest.fixture
def admin_user(db):
    return factories.UserFactory(username="site-admin", role=roles.ADMIN)


@pytest.fixture
def dataset(admin_user):
    from mlops import services

    return services.dataset_create(name="kermany-small", user=admin_user)


@pytest.fixture
def import_zip(dataset, admin_user):
    """Import a zip through the browser path (job + worker service), returning the job."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from mlops import services
    from mlops.execute import imports

    def run(data: bytes, name: str = "set.zip"):
        job = services.import_job_create(
            dataset=dataset, upload=SimpleUploadedFile(name, data), user=admin_user
        )
        imports.import_job_run(job_id=job.pk)
        job.refresh_from_db()
        return job

    return run
