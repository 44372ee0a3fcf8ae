from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction

from chestnet_site.errors import ServiceError
from registry import artifacts, services
from registry.models import Activation, ModelVersion

POINTS = [
    {"threshold": 0.9, "sensitivity": 0.80, "specificity": 0.99},
    {"threshold": 0.6, "sensitivity": 0.95, "specificity": 0.90},
    {"threshold": 0.4, "sensitivity": 0.97, "specificity": 0.85},
    {"threshold": 0.2, "sensitivity": 0.99, "specificity": 0.60},
]


@pytest.fixture
def artifact(tmp_path):
    """An artifact-shaped file pair (no TensorFlow needed to register or activate)."""
    from ml.artifact import write_card

    def make(version: str, threshold: float = 0.5):
        path = tmp_path / version / "m.keras"
        path.parent.mkdir(parents=True)
        path.write_bytes(version.encode() * 10)
        write_card(
            path,
            {
                "version": version,
                "image_size": 64,
                "threshold": threshold,
                "labels": ["NORMAL", "PNEUMONIA"],
                "preprocessing_version": "1",
                "validation": {"roc_auc": 0.9, "operating_points": POINTS},
            },
        )
        return path

    return make


def test_a_registered_version_is_stored_through_storage(artifact, db, settings):
    version = services.version_register(path=artifact("v1"), origin=ModelVersion.Origin.TRAINED)
    local = artifacts.local_artifact(version)
    assert local.read_bytes() == b"v1" * 10
    assert json.loads(local.with_suffix(".json").read_text())["version"] == "v1"
    assert str(local).startswith(str(settings.MEDIA_ROOT))


def test_ensure_default_version_registers_the_configured_model_once(artifact, db, settings):
    settings.CHESTNET_MODEL_PATH = str(artifact("shipped-1", threshold=0.42))
    first = services.ensure_default_version()
    assert first.is_active and first.origin == "shipped" and first.active_threshold == 0.42
    assert services.ensure_default_version() is None
    assert ModelVersion.objects.count() == 1


def test_ensure_default_version_survives_a_missing_artifact(db, settings, tmp_path):
    settings.CHESTNET_MODEL_PATH = str(tmp_path / "missing.keras")
    assert services.ensure_default_version() is None
    call_command("ensure_default_model")
    assert not ModelVersion.objects.exists()


def test_activation_sets_the_threshold_from_the_validation_operating_point(
    artifact, db, admin_user
):
    version = services.version_register(path=artifact("v1"), origin="trained")
    services.version_activate(version=version, user=admin_user, operating_point="0.95")
    version.refresh_from_db()
    assert version.active_threshold == 0.6  # the most specific point reaching 0.95
    assert "sensitivity ≥ 0.95" in version.operating_point
    services.version_activate(version=version, user=admin_user, operating_point="0.99")
    version.refresh_from_db()
    assert version.active_threshold == 0.2
    with pytest.raises(ServiceError, match="no validation operating point"):
        services.version_activate(version=version, user=admin_user, operating_point="0.999")


def test_exactly_one_version_is_active_and_rollback_restores_the_old_threshold(
    artifact, db, admin_user
):
    v1 = services.version_register(path=artifact("v1"), origin="trained")
    v2 = services.version_register(path=artifact("v2"), origin="trained")
    services.version_activate(version=v1, user=admin_user, operating_point="0.97")
    services.version_activate(version=v2, user=admin_user)
    assert list(ModelVersion.objects.filter(is_active=True)) == [v2]
    old = Activation.objects.filter(version=v1).get()
    services.version_rollback(activation=old, user=admin_user)
    active = ModelVersion.objects.get(is_active=True)
    assert (active, active.active_threshold) == (v1, 0.4)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=v2.pk).update(is_active=True)


# `activate_model` moved to mlops with the activation floors (mlops.rollout); its tests are
# in tests/mlops/test_mlops_rollout.py. The registry records activations and judges none.


def test_an_activation_keeps_the_override_reason_it_was_given(artifact, db, admin_user):
    version = services.version_register(path=artifact("v8"), origin="trained")
    services.version_activate(version=version, user=admin_user, override_reason="  pilot  ")
    services.version_rollback(activation=Activation.objects.get(), user=admin_user)
    assert [a.override_reason for a in Activation.objects.order_by("pk")] == ["pilot", ""]


def test_the_default_version_is_activated_without_floors_on_a_fresh_install(artifact, db, settings):
    """The bootstrap: a card with no validation evidence at all still becomes active, since
    the workers would serve that file anyway with no version registered."""
    settings.CHESTNET_MODEL_PATH = str(artifact("bare-1"))
    call_command("ensure_default_model")
    activation = Activation.objects.get()
    assert activation.version.is_active and activation.actor is None
    assert activation.override_reason == ""


@pytest.mark.slow
def test_workers_follow_the_active_version_without_a_restart(
    db, settings, tmp_path, tiny_model_path, admin_user
):
    from devtools.tiny_artifact import write_tiny_artifact
    from diagnosis import inference

    settings.CHESTNET_MODEL_PATH = str(tiny_model_path)
    assert inference.get_predictor().version == "tiny-test-0"  # no version: the setting
    other = services.version_register(
        path=write_tiny_artifact(tmp_path / "b.keras", seed=3), origin="trained"
    )
    services.version_activate(version=other, user=admin_user)
    predictor = inference.get_predictor()
    assert (predictor.version, predictor.threshold) == ("tiny-test-3", 0.5)
    services.version_activate(version=other, user=admin_user, operating_point="card")
    ModelVersion.objects.filter(pk=other.pk).update(active_threshold=0.25)
    assert inference.get_predictor().threshold == 0.25
    assert inference.get_predictor() is inference.get_predictor()  # no reload when unchanged


def test_an_altered_artifact_cannot_be_activated(artifact, db, admin_user):
    version = services.version_register(path=artifact("v9"), origin="trained")
    artifacts.local_artifact(version).write_bytes(b"tampered")
    with pytest.raises(ServiceError, match="cannot be used"):
        services.version_activate(version=version, user=admin_user)
    assert not ModelVersion.objects.filter(is_active=True).exists()
