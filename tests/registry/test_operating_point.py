"""Which threshold the active version serves, and why (registry.operating_point)."""

from __future__ import annotations

import pytest

from registry import operating_point, services
from registry.models import ModelVersion

POINTS = [
    {"threshold": 0.9, "sensitivity": 0.80, "specificity": 0.99},
    {"threshold": 0.6, "sensitivity": 0.95, "specificity": 0.90},
    {"threshold": 0.4, "sensitivity": 0.97, "specificity": 0.85},
]
TRAINED_RULE = "Highest threshold with sensitivity >= 0.97 on held-out acquisition batches."
SITE_RULE = (
    "Highest threshold with sensitivity >= 0.97 on the site's own labelled images "
    "(site calibration at St Elsewhere)."
)


@pytest.fixture
def register(tmp_path, db):
    """Register an artifact-shaped file pair (no TensorFlow needed to activate it); a
    card key given as None is left out."""
    from ml.artifact import write_card

    def make(version: str, *, origin: str = "trained", **card) -> ModelVersion:
        path = tmp_path / version / "m.keras"
        path.parent.mkdir(parents=True)
        path.write_bytes(version.encode() * 10)
        values = {
            "version": version,
            "image_size": 64,
            "threshold": 0.42,
            "threshold_rule": TRAINED_RULE,
            "labels": ["NORMAL", "PNEUMONIA"],
            "preprocessing_version": "1",
            "validation": {"roc_auc": 0.9, "operating_points": POINTS},
            **card,
        }
        write_card(path, {key: value for key, value in values.items() if value is not None})
        return services.version_register(path=path, origin=origin)

    return make


def test_the_card_default_is_served_for_the_rule_it_was_trained_by(register, admin_user):
    version = register("v1")
    services.version_activate(version=version, user=admin_user)
    served = operating_point.served_point()
    assert (served.version, served.threshold) == ("v1", 0.42)
    assert served.chosen == operating_point.CHOSEN_CARD and served.override_reason == ""
    assert served.reason == f"The card's threshold, chosen in training: {TRAINED_RULE}"


def test_a_target_sensitivity_chosen_at_activation_is_the_reason(register, admin_user):
    version = register("v1")
    services.version_activate(version=version, user=admin_user, operating_point="0.95")
    served = operating_point.served_point(version)
    assert served.threshold == 0.6 and served.chosen == operating_point.CHOSEN_TARGET
    assert served.reason == (
        "A target sensitivity chosen at activation: sensitivity ≥ 0.95 (validation: "
        "sensitivity 0.950, specificity 0.900)."
    )


def test_a_calibrated_version_serves_the_site_calibrations_threshold(register, admin_user):
    site = {"site": "St Elsewhere", "base_version": "v1", "threshold": 0.3}
    version = register(
        "v1-site",
        origin="calibrated",
        threshold=0.3,
        threshold_rule=SITE_RULE,
        site_calibration=site,
    )
    services.version_activate(version=version, user=admin_user)
    served = operating_point.served_point()
    assert served.threshold == 0.3 and served.chosen == operating_point.CHOSEN_SITE
    assert served.reason == f"The site calibration's threshold: {SITE_RULE}"


def test_an_override_reason_is_part_of_the_reason(register, admin_user):
    version = register("v1", threshold_rule=None)
    services.version_activate(version=version, user=admin_user, override_reason="Demo ward pilot.")
    served = operating_point.served_point()
    assert served.reason == (
        "The card's threshold, chosen in training: as trained. Activated below the floors: "
        "Demo ward pilot."
    )


def test_a_rollback_serves_the_earlier_choice_for_its_earlier_reason(register, admin_user):
    v1, v2 = register("v1"), register("v2")
    services.version_activate(version=v1, user=admin_user, operating_point="0.97")
    earlier = v1.activations.get()
    services.version_activate(version=v2, user=admin_user)
    assert operating_point.served_point().version == "v2"
    services.version_rollback(activation=earlier, user=admin_user)
    served = operating_point.served_point()
    assert (served.version, served.threshold, served.chosen) == ("v1", 0.4, "target sensitivity")


def test_a_version_that_is_not_active_serves_nothing(register, admin_user):
    version = register("v1")
    assert operating_point.served_point() is None
    assert operating_point.served_point(version) is None
    services.version_activate(version=register("v2"), user=admin_user)
    assert operating_point.served_point(ModelVersion.objects.get(version="v1")) is None


def test_the_card_default_description_is_what_activation_records_whole(register, admin_user):
    rule = "chosen for sensitivity 0.97 on the batch-level validation split " * 3
    version = register("v1", threshold_rule=rule)
    threshold, description = operating_point.threshold_for(version, operating_point.CARD_DEFAULT)
    assert threshold == 0.42
    assert description == "card default: " + rule  # never cut (it was, at 100 characters)
    services.version_activate(version=version, user=admin_user)
    version.refresh_from_db()
    assert version.operating_point == description
    assert version.activations.get().operating_point == description
