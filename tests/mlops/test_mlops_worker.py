"""A real training worker (Redis broker, separate `training` queue, TensorFlow in the
child only) runs a tiny training: one epoch, a tiny network, a few dozen images. Then the
inference worker analyses a new upload with the freshly activated version."""

from __future__ import annotations

import pytest

from accounts import roles
from diagnosis import services as diagnosis_services
from diagnosis.models import Case
from mlops import services
from mlops.execute import imports
from mlops.models import Dataset, DatasetImage, Evaluation, ImportJob, Split, TrainingRun
from registry import services as registry
from registry.models import ModelVersion
from tests.support import factories
from tests.support.datasets import TINY_RUN, labelled_entries, zip_bytes
from tests.support.stack import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def queued():
    """Override the unit tests' fake broker: these tests publish for real."""


@pytest.fixture(autouse=True)
def _media_in_tmp():
    """Override: media is shared with the workers (stack plugin)."""


def _trainable_dataset(admin) -> Dataset:
    from django.core.files.uploadedfile import SimpleUploadedFile

    dataset = services.dataset_create(name="tiny", user=admin)
    job = services.import_job_create(
        dataset=dataset,
        upload=SimpleUploadedFile("t.zip", zip_bytes(labelled_entries(20, 20))),
        user=admin,
    )
    # The running worker may claim the queued import before this call does (then this one
    # is skipped): either way, wait until the import is done before assigning splits.
    imports.import_job_run(job_id=job.pk)
    wait_for(
        lambda: ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.DONE).exists(),
        timeout=120,
    )
    services.dataset_assign_splits(
        dataset=dataset, validation_fraction=0.25, test_fraction=0.2, seed=5, user=admin
    )
    return dataset


def _finished(run_id: int) -> TrainingRun | None:
    run = TrainingRun.objects.get(pk=run_id)
    return run if run.is_finished else None


def test_a_tiny_run_trains_evaluates_and_its_version_serves_new_uploads(
    shared_media, training_worker, worker, settings
):
    settings.MEDIA_ROOT = shared_media
    admin = factories.UserFactory(username="it-admin", role=roles.ADMIN)
    dataset = _trainable_dataset(admin)
    run = services.training_run_start(dataset=dataset, user=admin, **TINY_RUN)
    run = wait_for(lambda: _finished(run.pk), timeout=600, interval=1)
    assert run.status == TrainingRun.Status.SUCCEEDED, (run.error, run.log)
    assert [epoch["epoch"] for epoch in run.history] == [1]
    assert {"loss", "auc", "val_loss", "val_auc"} <= set(run.history[0])
    assert "Registered model version" in run.log

    version = ModelVersion.objects.get(training_run=run)
    assert version.card["version"] == version.version
    assert version.card["images"]["train"] + version.card["images"]["validation"] == 32
    assert version.validation["operating_points"]
    evaluation = Evaluation.objects.get(version=version)
    assert evaluation.status == Evaluation.Status.DONE and evaluation.metrics["submitted"] == 8
    # The tiny model's gate may refuse a synthetic image; every image is scored or refused.
    assert evaluation.metrics["count"] + evaluation.metrics["refused"] == 8
    assert set(evaluation.plots) == {"roc", "precision_recall", "calibration", "confusion_matrix"}
    assert all((shared_media / name).stat().st_size > 1000 for name in evaluation.plots.values())

    registry.version_activate(version=version, user=admin, operating_point="card")
    clinician = factories.UserFactory(username="it-clinician", role=roles.CLINICIAN)
    # One of the run's own training images: inside what the version's input gate accepts
    # (an unrelated synthetic image may rightly be refused by a model trained on 32 images).
    trained_on = DatasetImage.objects.filter(dataset=dataset, split=Split.TRAIN).first()
    with trained_on.file.open("rb") as handle:
        data = handle.read()
    validated = diagnosis_services.image_validate(name="a.png", data=data)
    case = diagnosis_services.case_create(owner=clinician, images=[validated])
    case = wait_for(
        lambda: Case.objects.filter(pk=case.pk, status=Case.Status.AWAITING_REVIEW).first(),
        timeout=240,
    )
    prediction = case.images.get().prediction
    assert prediction.model_version == version.version  # not the worker's tiny-test-0 setting
    assert prediction.threshold == pytest.approx(version.active_threshold)


def test_a_running_run_can_be_cancelled(shared_media, training_worker, settings):
    settings.MEDIA_ROOT = shared_media
    admin = factories.UserFactory(username="it-admin2", role=roles.ADMIN)
    dataset = _trainable_dataset(admin)
    run = services.training_run_start(dataset=dataset, user=admin, **{**TINY_RUN, "epochs": 200})
    wait_for(
        lambda: TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).exists(),
        timeout=120,
    )
    services.training_run_cancel(run=run, user=admin)
    run = wait_for(lambda: _finished(run.pk), timeout=300, interval=1)
    assert run.status == TrainingRun.Status.CANCELLED
    assert len(run.history) < 200
    assert not ModelVersion.objects.filter(training_run=run).exists()
