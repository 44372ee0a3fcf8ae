"""A training run, an evaluation or a site calibration that cannot be queued fails at once,
with the reason, and ends only once (mlops.services.job_enqueue, job_end)."""

from __future__ import annotations

import pytest

from mlops import services
from mlops.calibration import CALIBRATION_TASK, calibration_fail
from mlops.models import Evaluation, SiteCalibration, TrainingRun
from registry.models import ModelVersion


@pytest.fixture
def jobs(dataset, admin_user):
    version = ModelVersion.objects.create(
        version="v1", origin="trained", artifact="a.keras", card_file="a.json", sha256="0" * 64
    )
    return {
        "run": TrainingRun.objects.create(dataset=dataset, created_by=admin_user),
        "evaluation": Evaluation.objects.create(version=version, dataset=dataset),
        "calibration": SiteCalibration.objects.create(base_version=version),
    }


def test_a_job_that_cannot_be_queued_fails_at_once(
    jobs, monkeypatch, django_capture_on_commit_callbacks
):
    from chestnet_site.celery import app

    def broker_down(*args, **kwargs):
        raise ConnectionError("no broker")

    monkeypatch.setattr(app, "send_task", broker_down)
    queued = (
        (services.TRAINING_TASK, jobs["run"]),
        (services.EVALUATION_TASK, jobs["evaluation"]),
        (CALIBRATION_TASK, jobs["calibration"]),
    )
    with django_capture_on_commit_callbacks(execute=True):
        for task, job in queued:
            services.job_enqueue(task, type(job), job.pk, unavailable=f"No queue for {task}.")
    for task, job in queued:
        job.refresh_from_db()
        assert (job.status, job.error) == ("failed", f"No queue for {task}.")
    assert jobs["run"].finished_at and jobs["calibration"].finished_at


def test_a_job_that_ended_is_not_ended_again(jobs):
    calibration = jobs["calibration"]
    calibration_fail(calibration.pk, reason="x" * 2000)
    calibration.refresh_from_db()
    assert calibration.status == "failed" and calibration.error == "x" * 1000
    ended = calibration.finished_at
    calibration_fail(calibration.pk, reason="again")
    services.evaluation_fail(jobs["evaluation"].pk, reason="gone")
    services.training_run_finish(jobs["run"].pk, TrainingRun.Status.SUCCEEDED)
    calibration.refresh_from_db()
    assert (calibration.error, calibration.finished_at) == ("x" * 1000, ended)
    assert Evaluation.objects.get().error == "gone"
    assert TrainingRun.objects.get().status == "succeeded"
