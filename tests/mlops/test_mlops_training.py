from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from chestnet_site.errors import ServiceError
from mlops import services
from mlops.execute import training_run
from mlops.execute.training_run import training_run_execute
from mlops.models import TrainingRun
from tests.support.datasets import labelled_entries, zip_bytes


@pytest.fixture
def trainable(import_zip, dataset, admin_user):
    import_zip(zip_bytes(labelled_entries(16, 16)))
    services.dataset_assign_splits(
        dataset=dataset, validation_fraction=0.25, test_fraction=0.2, seed=1, user=admin_user
    )
    return dataset


def test_a_one_class_dataset_is_refused_with_a_reason(import_zip, dataset, admin_user, queued):
    import_zip(zip_bytes(labelled_entries(0, 30)))
    services.dataset_assign_splits(
        dataset=dataset, validation_fraction=0.2, test_fraction=0.1, seed=1, user=admin_user
    )
    with pytest.raises(ServiceError, match="train split has 0 NORMAL image"):
        services.training_run_start(dataset=dataset, user=admin_user)
    assert not TrainingRun.objects.exists() and queued["training"] == []


def test_too_few_images_are_refused(import_zip, dataset, admin_user):
    import_zip(zip_bytes(labelled_entries(4, 4)))
    services.dataset_assign_splits(
        dataset=dataset, validation_fraction=0.3, test_fraction=0.0, seed=1, user=admin_user
    )
    with pytest.raises(ServiceError, match="at least 8 are needed"):
        services.training_run_start(dataset=dataset, user=admin_user)


def test_bad_settings_are_refused(trainable, admin_user):
    with pytest.raises(ServiceError, match="Unknown architecture"):
        services.training_run_start(dataset=trainable, user=admin_user, arch="transformer")
    with pytest.raises(ServiceError, match="width must be between 16"):
        services.training_run_start(dataset=trainable, user=admin_user, width=8)


def test_a_run_is_queued_on_commit(
    trainable, admin_user, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = services.training_run_start(
            dataset=trainable, user=admin_user, epochs=1, image_size=64, width=16, stages=2
        )
    assert queued["training"] == [run.pk]
    assert run.config == {
        "epochs": 1,
        "arch": "resnet",
        "image_size": 64,
        "width": 16,
        "stages": 2,
        "seed": 1337,
    }


def test_cancelling_a_queued_run_stops_it_before_it_starts(trainable, admin_user):
    run = services.training_run_start(dataset=trainable, user=admin_user)
    services.training_run_cancel(run=run, user=admin_user)
    assert run.status == TrainingRun.Status.CANCELLED
    assert training_run_execute(run_id=run.pk) == "skipped"


def test_progress_is_recorded_and_a_cancel_stops_a_running_run(trainable, admin_user, monkeypatch):
    import ml.train

    run = services.training_run_start(dataset=trainable, user=admin_user, epochs=5)

    def fake_train(config, *, split, progress, should_stop, **kw):
        assert len(split.train) >= 16 and all(r.path.startswith("/") for r in split.train)
        progress(
            {"epoch": 1, "epochs": 5, "loss": 0.7, "auc": 0.6, "val_loss": 0.69, "val_auc": 0.55}
        )
        TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
        monkeypatch.setattr(training_run, "STOP_POLL_S", 0)
        assert should_stop()
        raise ml.train.TrainingCancelled("Training was cancelled.")

    monkeypatch.setattr(ml.train, "train", fake_train)
    assert training_run_execute(run_id=run.pk) == "cancelled"
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED
    assert run.history[0]["val_auc"] == 0.55
    assert "Epoch 1/5" in run.log


def test_a_refusal_by_ml_train_fails_the_run_with_its_reason(trainable, admin_user, monkeypatch):
    import ml.train

    def refuse(config, **kw):
        raise ValueError("The validation split has 1 NORMAL image(s); at least 2 are needed.")

    monkeypatch.setattr(ml.train, "train", refuse)
    run = services.training_run_start(dataset=trainable, user=admin_user)
    assert training_run_execute(run_id=run.pk) == "failed"
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "at least 2 are needed" in run.error
    assert training_run_execute(run_id=run.pk) == "skipped"  # a redelivery does nothing


def test_train_model_command_refuses_an_untrainable_dataset(import_zip, dataset):
    import_zip(zip_bytes(labelled_entries(0, 12)))
    with pytest.raises(CommandError, match="Refused"):
        call_command("train_model", "--dataset", dataset.name)
    with pytest.raises(CommandError, match="No dataset"):
        call_command("train_model", "--dataset", "missing")


def test_a_crashed_worker_process_fails_the_run(trainable, admin_user):
    from billiard.exceptions import WorkerLostError

    from mlops import tasks

    run = services.training_run_start(dataset=trainable, user=admin_user)
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.RUNNING)
    # What the worker's parent sends when the pool child dies (e.g. SIGABRT in TensorFlow).
    tasks._child_lost(
        sender=tasks.training_run_task, args=[run.pk], exception=WorkerLostError("signal 6")
    )
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "stopped unexpectedly" in run.error and "signal 6" in run.error
