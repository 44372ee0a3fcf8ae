"""Safe roll-out (mlops.rollout): activation floors, overrides with a recorded reason,
rollback under the same policy, and re-analysis of the withdrawn version's unreported cases;
through the service, the command and the browser."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.urls import reverse

from diagnosis.models import AuditEvent, Case, Image, Prediction, PriorPrediction
from mlops import rollout
from mlops.models import Evaluation
from registry import services as registry
from registry.models import Activation, ModelVersion
from tests.support import factories


def _points(*rows: tuple[float, float, float]) -> list[dict[str, float]]:
    """Operating points, from (threshold, sensitivity, specificity) rows."""
    names = ("threshold", "sensitivity", "specificity")
    return [dict(zip(names, row, strict=True)) for row in rows]


# A test evaluation's whole ROC curve (mlops.execute.evaluation stores every point).
CURVE = _points(
    (0.9, 0.70, 0.99),
    (0.6, 0.90, 0.95),
    (0.5, 0.96, 0.85),
    (0.45, 0.97, 0.82),
    (0.3, 0.98, 0.70),
    (0.15, 1.00, 0.40),
)
STRONG = {
    "count": 250,
    "positives": 150,
    "roc_auc": 0.97,
    "threshold": 0.5,  # the card's threshold, which evaluations score at
    "sensitivity": 0.96,
    "specificity": 0.85,
    "operating_points": CURVE,
}
# The card's validation points: "0.97" picks threshold 0.4, "0.99" picks 0.2.
VALIDATION_POINTS = _points((0.6, 0.95, 0.90), (0.4, 0.97, 0.85), (0.2, 0.99, 0.60))
VALIDATION = {
    "count": 907,
    "roc_auc": 0.99,
    "threshold": 0.5,
    "sensitivity": 0.96,
    "specificity": 0.90,
    "operating_points": VALIDATION_POINTS,
}


@pytest.fixture
def register(tmp_path, db):
    """A registered version (artifact-shaped files, no TensorFlow needed to activate)."""
    from ml.artifact import write_card

    def make(name: str, validation: dict | None = None) -> ModelVersion:
        path = tmp_path / name / "m.keras"
        path.parent.mkdir()
        path.write_bytes(name.encode() * 10)
        card = {
            "version": name,
            "image_size": 64,
            "threshold": 0.5,
            "labels": ["NORMAL", "PNEUMONIA"],
            "preprocessing_version": "1",
            "validation": VALIDATION if validation is None else validation,
        }
        write_card(path, card)
        return registry.version_register(path=path, origin="trained")

    return make


@pytest.fixture
def evaluate(dataset):
    """A finished test evaluation of a version with these metrics."""

    def make(version: ModelVersion, **changes) -> Evaluation:
        metrics = {**STRONG, **changes}
        return Evaluation.objects.create(
            version=version, dataset=dataset, items_sha256="x", status="done", metrics=metrics
        )

    return make


@pytest.fixture
def rolled_forward(register, evaluate, admin_user):
    """v1, below the floors, activated with an override, then v2 above them: (v1, v2, v1's
    activation, the one to roll back to)."""
    v1, v2 = register("v1"), register("v2")
    evaluate(v1, roc_auc=0.6)
    evaluate(v2)
    rollout.rollout_activate(version=v1, user=admin_user, override_reason="bootstrap")
    rollout.rollout_activate(version=v2, user=admin_user)
    return v1, v2, Activation.objects.get(version=v1)


def _audit(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action))


# --- the floors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"roc_auc": 0.9}, "ROC AUC 0.900 below 0.95"),
        ({"sensitivity": 0.93}, "sensitivity 0.930 at threshold 0.5000 below 0.95"),
        ({"specificity": 0.7}, "specificity 0.700 at threshold 0.5000 below 0.80"),
        ({"count": 150}, "it rests on 150 image(s), fewer than 200"),
        ({"roc_auc": None}, "ROC AUC unknown"),
    ],
)
def test_activation_below_a_floor_is_refused_naming_it(
    register, evaluate, admin_user, changes, named
):
    version = register("weak-1")
    evaluate(version, **changes)
    with pytest.raises(rollout.ActivationRefused) as refused:
        rollout.rollout_activate(version=version, user=admin_user)
    assert named in str(refused.value)
    assert "test evaluation on kermany-small" in str(refused.value)
    assert not ModelVersion.objects.filter(is_active=True).exists()
    assert not Activation.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="activat").exists()


def test_the_floors_are_settings(register, evaluate, admin_user, settings):
    version = register("weak-1")
    evaluate(version, roc_auc=0.9, count=150)
    settings.CHESTNET_ACTIVATION_MIN_AUC = 0.85
    settings.CHESTNET_ACTIVATION_MIN_TEST_IMAGES = 100
    assert rollout.rollout_activate(version=version, user=admin_user).version.is_active


def test_the_floor_settings_refuse_a_bad_value(monkeypatch):
    from chestnet_site.env import env_float

    monkeypatch.setenv("CHESTNET_ACTIVATION_MIN_AUC", "high")
    with pytest.raises(ImproperlyConfigured, match="must be a number"):
        env_float("CHESTNET_ACTIVATION_MIN_AUC", 0.95, minimum=0, maximum=1)
    monkeypatch.setenv("CHESTNET_ACTIVATION_MIN_AUC", "1.5")
    with pytest.raises(ImproperlyConfigured, match="at most 1"):
        env_float("CHESTNET_ACTIVATION_MIN_AUC", 0.95, minimum=0, maximum=1)
    monkeypatch.setenv("CHESTNET_ACTIVATION_MIN_AUC", "0.9")
    assert env_float("CHESTNET_ACTIVATION_MIN_AUC", 0.95, minimum=0, maximum=1) == 0.9


def test_evidence_that_meets_the_floors_activates_and_is_audited(register, evaluate, admin_user):
    version = register("good-1")
    evaluate(version)
    done = rollout.rollout_activate(version=version, user=admin_user)
    assert done.version.is_active and not done.overridden and done.withdrawn is None
    assert Activation.objects.get().override_reason == ""
    (event,) = _audit("activated")
    assert event.actor == admin_user and "good-1 at threshold 0.5000" in event.detail


def test_the_latest_finished_evaluation_is_the_evidence(register, evaluate, admin_user, dataset):
    version = register("v1")
    evaluate(version)
    evaluate(version, roc_auc=0.6)  # newer and weak: it decides
    Evaluation.objects.create(version=version, dataset=dataset, items_sha256="x")  # queued
    with pytest.raises(rollout.ActivationRefused, match="ROC AUC 0.600"):
        rollout.rollout_activate(version=version, user=admin_user)


def test_figures_are_read_at_the_chosen_operating_point(register, evaluate, admin_user):
    """Sensitivity ≥ 0.97 serves threshold 0.4 (from the card's validation); the test curve
    flags at 0.4 what it flags at its next point up, 0.45: specificity 0.82 passes. At
    sensitivity ≥ 0.99 (threshold 0.2) the test curve's point 0.3 gives specificity 0.70."""
    version = register("v1")
    evaluate(version)
    verdict = rollout.activation_check(version=version, threshold=0.4)
    assert (verdict.evidence.sensitivity, verdict.evidence.specificity) == (0.97, 0.82)
    assert rollout.rollout_activate(version=version, user=admin_user, operating_point="0.97")
    with pytest.raises(rollout.ActivationRefused, match="specificity 0.700 at threshold 0.2000"):
        rollout.rollout_activate(version=version, user=admin_user, operating_point="0.99")


def test_an_evaluation_without_its_curve_only_vouches_for_its_own_threshold(
    register, evaluate, admin_user
):
    version = register("v1")
    evaluate(version, operating_points=None)  # stored before evaluations kept their curve
    with pytest.raises(rollout.ActivationRefused, match="sensitivity unknown at threshold 0.4"):
        rollout.rollout_activate(version=version, user=admin_user, operating_point="0.97")
    assert rollout.rollout_activate(version=version, user=admin_user).version.is_active


def test_without_an_evaluation_the_cards_validation_is_the_evidence(register, admin_user):
    shipped = register("shipped-like")  # 907 validation images, like the shipped card
    done = rollout.rollout_activate(version=shipped, user=admin_user, operating_point="0.97")
    assert done.verdict.evidence.source == "card's validation"
    assert (done.verdict.evidence.sensitivity, done.verdict.evidence.specificity) == (0.97, 0.85)
    with pytest.raises(rollout.ActivationRefused, match="specificity 0.600 at threshold 0.2000"):
        rollout.rollout_activate(version=shipped, user=admin_user, operating_point="0.99")
    small = register("small-card", validation={**VALIDATION, "count": 40})
    with pytest.raises(rollout.ActivationRefused, match="rests on 40 image"):
        rollout.rollout_activate(version=small, user=admin_user)
    bare = register("no-validation", validation={})
    with pytest.raises(rollout.ActivationRefused, match="rests on 0 image"):
        rollout.rollout_activate(version=bare, user=admin_user)


def test_the_shipped_default_meets_the_floors_on_its_own_card(db, admin_user, settings):
    from ml.artifact import DEFAULT_ARTIFACT

    settings.CHESTNET_MODEL_PATH = str(DEFAULT_ARTIFACT)
    version = registry.ensure_default_version()  # the bootstrap: no floors
    for point in ("card", "0.97"):
        verdict = rollout.activation_check(
            version=version, threshold=registry.threshold_for(version, point)[0]
        )
        assert verdict.passed, verdict.failures


def test_a_finished_evaluation_keeps_its_whole_roc_curve_for_the_floors(
    register, dataset, import_zip, admin_user, monkeypatch
):
    """The worker stores every ROC point, so sensitivity and specificity at any threshold
    read exactly what scoring the test images at that threshold gives."""
    import hashlib
    from types import SimpleNamespace

    import numpy as np

    from ml import metrics
    from ml.predictor import Predictor
    from mlops import services
    from mlops.execute.evaluation import evaluation_execute
    from tests.support.datasets import labelled_entries, zip_bytes

    def score(data: bytes) -> float:  # a fixed pseudo-score per file, no TensorFlow
        return int(hashlib.sha256(data).hexdigest()[:6], 16) / 0xFFFFFF

    fake = SimpleNamespace(
        threshold=0.5,
        version="v1",
        predict_batch=lambda images: [
            SimpleNamespace(refused=False, probability=score(data), label="?") for data in images
        ],
    )
    monkeypatch.setattr(Predictor, "load", classmethod(lambda cls, path=None: fake))
    import_zip(zip_bytes(labelled_entries(15, 15)))
    services.dataset_assign_splits(
        dataset=dataset, validation_fraction=0.2, test_fraction=0.5, seed=1, user=admin_user
    )
    version = register("v1")
    evaluation = services.evaluation_start(version=version, dataset=dataset, user=admin_user)
    assert evaluation_execute(evaluation_id=evaluation.pk) == "done"

    images = list(dataset.images.filter(split="test"))
    targets = np.array([image.label == "PNEUMONIA" for image in images], dtype=float)
    scores = np.array([score(image.file.read()) for image in images])
    evaluation.refresh_from_db()
    assert len(evaluation.metrics["operating_points"]) == len(set(scores))
    for threshold in (0.5, 0.2, 0.4, 0.77, float(np.median(scores)), 0.999):
        expected = metrics.at_threshold(targets, scores, threshold)
        evidence = rollout.activation_evidence(version=version, threshold=threshold)
        assert evidence.images == len(images)
        assert evidence.sensitivity == pytest.approx(expected["sensitivity"]), threshold
        assert evidence.specificity == pytest.approx(expected["specificity"]), threshold


# --- overrides -------------------------------------------------------------------------


def test_an_override_reason_activates_and_records_who_and_why(register, evaluate, admin_user):
    version = register("tiny-1")
    evaluate(version, roc_auc=0.5, count=8)
    done = rollout.rollout_activate(
        version=version, user=admin_user, override_reason="  pilot on the test ward  "
    )
    assert done.version.is_active and done.overridden
    assert Activation.objects.get().override_reason == "pilot on the test ward"
    (event,) = _audit("activation_overridden")
    assert event.actor == admin_user
    assert "reason: pilot on the test ward" in event.detail and "ROC AUC 0.500" in event.detail
    assert not _audit("activated")


def test_a_blank_reason_is_no_override(register, evaluate, admin_user):
    version = register("tiny-1")
    evaluate(version, roc_auc=0.5)
    with pytest.raises(rollout.ActivationRefused):
        rollout.rollout_activate(version=version, user=admin_user, override_reason=" \n\t")
    assert not Activation.objects.exists()


def test_a_reason_given_for_a_version_that_meets_the_floors_is_no_override(
    register, evaluate, admin_user
):
    version = register("good-1")
    evaluate(version)
    done = rollout.rollout_activate(version=version, user=admin_user, override_reason="just so")
    assert not done.overridden and Activation.objects.get().override_reason == ""
    assert _audit("activated") and not _audit("activation_overridden")


# --- the command -----------------------------------------------------------------------


def test_the_command_refuses_below_the_floors_and_overrides_with_a_reason(
    register, evaluate, capsys
):
    version = register("v7")
    evaluate(version, specificity=0.5)
    with pytest.raises(CommandError, match="specificity 0.500 at threshold 0.5000 below 0.80"):
        call_command("activate_model", "v7")
    assert not ModelVersion.objects.filter(is_active=True).exists()
    call_command("activate_model", "v7", "--override-reason", "vendor recall of v6")
    assert "below the floors" in capsys.readouterr().out
    activation = Activation.objects.get()
    assert (activation.override_reason, activation.actor) == ("vendor recall of v6", None)
    (event,) = _audit("activation_overridden")
    assert event.detail.startswith("manage.py activate_model as ")
    assert "vendor recall of v6" in event.detail


def test_the_command_activates_at_a_target_sensitivity(register, evaluate, capsys):
    """Moved here from tests/registry with the command: activation now needs evidence."""
    evaluate(register("v7"))
    call_command("activate_model", "v7", "--sensitivity", "0.97")
    assert ModelVersion.objects.get(is_active=True).active_threshold == 0.4
    assert "v7 is active at threshold 0.4000" in capsys.readouterr().out
    with pytest.raises(CommandError, match="No model version 'nope'"):
        call_command("activate_model", "nope")
    with pytest.raises(CommandError, match="no validation operating point"):
        call_command("activate_model", "v7", "--sensitivity", "0.999")


# --- rollback and withdrawal -----------------------------------------------------------


def test_rollback_goes_through_the_floors(register, evaluate, admin_user):
    v1, v2 = register("v1"), register("v2")
    evaluate(v1)
    evaluate(v2)
    rollout.rollout_activate(version=v1, user=admin_user, operating_point="0.97")
    rollout.rollout_activate(version=v2, user=admin_user)
    evaluate(v1, roc_auc=0.7)  # v1 has since done badly on a newer test set
    earlier = Activation.objects.get(version=v1)
    with pytest.raises(rollout.ActivationRefused, match="ROC AUC 0.700"):
        rollout.rollout_rollback(activation=earlier, user=admin_user)
    assert ModelVersion.objects.get(is_active=True) == v2
    done = rollout.rollout_rollback(activation=earlier, user=admin_user, override_reason="v2 bug")
    assert (done.version, done.version.active_threshold) == (v1, 0.4)
    assert Activation.objects.filter(version=v1).first().override_reason == "v2 bug"


def test_the_withdrawn_versions_unreported_cases_are_analysed_again(
    register, evaluate, admin_user, queued, django_capture_on_commit_callbacks
):
    # The factories' predictions carry model_version "test-1": that is the withdrawn one.
    v1, withdrawn = register("v1"), register("test-1")
    evaluate(v1)
    evaluate(withdrawn)
    rollout.rollout_activate(version=v1, user=admin_user)
    rollout.rollout_activate(version=withdrawn, user=admin_user)
    unreported = factories.awaiting_review_case()
    reported = factories.awaiting_review_case()
    factories.ReviewFactory(case=reported)
    Case.objects.filter(pk=reported.pk).update(status=Case.Status.REPORTED)
    other = factories.awaiting_review_case()
    Prediction.objects.filter(image__case=other).update(model_version="v1")

    with django_capture_on_commit_callbacks(execute=True):
        done = rollout.rollout_rollback(
            activation=Activation.objects.get(version=v1), user=admin_user
        )

    assert (done.withdrawn, done.reanalysed) == ("test-1", 1)
    image = unreported.images.get()
    assert queued["inference"] == [image.pk]
    image.refresh_from_db()
    assert image.status == Image.Status.QUEUED
    assert PriorPrediction.objects.get(image=image).model_version == "test-1"
    assert reported.images.get().status == Image.Status.DONE  # its report stands
    assert other.images.get().status == Image.Status.DONE  # not analysed by test-1
    assert AuditEvent.objects.filter(action="reanalysed", case=unreported).exists()
    assert "1 unreported case(s) analysed by test-1 queued" in rollout.rollout_summary(done)


def test_changing_the_active_versions_threshold_withdraws_nothing(register, evaluate, admin_user):
    version = register("test-1")
    evaluate(version)
    rollout.rollout_activate(version=version, user=admin_user)
    case = factories.awaiting_review_case()
    done = rollout.rollout_activate(version=version, user=admin_user, operating_point="0.97")
    assert (done.withdrawn, done.reanalysed) == (None, 0)
    assert case.images.get().status == Image.Status.DONE


# --- the browser -----------------------------------------------------------------------


def test_browser_refusal_shows_the_floors_then_an_override_activates(
    register, evaluate, admin_user, client_for
):
    version = register("tiny-1")
    evaluate(version, roc_auc=0.55, count=8)
    client = client_for(admin_user)
    url = reverse("mlops:version_activate", args=[version.pk])
    page = reverse("mlops:version_detail", args=[version.pk])

    assert "override_reason" not in client.get(page).content.decode()
    refused = client.post(url, {"operating_point": "card"}, follow=True)
    assert refused.redirect_chain[-1][0] == f"{page}?override=card#activate-form"
    text = refused.content.decode()
    assert "was not activated" in text and "ROC AUC 0.550 below 0.95" in text
    assert "rests on 8 image(s), fewer than 200" in text
    # The reason stands inside the form the page opens at, beside the override field,
    # and once: not in the flash above the page, scrolled out of sight.
    form = text[text.index('id="activate-form"') :].split("</form>")[0]
    assert "was not activated" in form and form.index("data-inline-message") < form.index(
        'id="override-field"'
    )
    assert text.count("was not activated") == 1
    assert 'name="override_reason"' in text and "Activate below the floors" in text
    assert not ModelVersion.objects.filter(is_active=True).exists()

    # A reason field sent with spaces only is not a reason: the page again, 400, saying so.
    blank = client.post(url, {"operating_point": "card", "override_reason": "  "})
    assert blank.status_code == 400 and "override reason in words" in blank.content.decode()

    done = client.post(
        url, {"operating_point": "card", "override_reason": "demo site, no patients"}, follow=True
    )
    assert "tiny-1 is active at threshold 0.5000" in done.content.decode()
    assert "demo site, no patients" in done.content.decode()  # the activation history
    assert Activation.objects.get().override_reason == "demo site, no patients"
    (event,) = _audit("activation_overridden")
    assert event.actor == admin_user


def test_browser_rollback_under_the_floors(rolled_forward, admin_user, client_for):
    v1, v2, earlier = rolled_forward
    client = client_for(admin_user)
    url = reverse("mlops:version_rollback", args=[earlier.pk])

    refused = client.post(url, follow=True)
    assert refused.redirect_chain[-1][0].endswith(f"?override={earlier.pk}#rollback-{earlier.pk}")
    text = refused.content.decode()
    assert "ROC AUC 0.600 below 0.95" in text and "Roll back below the floors" in text
    row_form = text[text.index(f'id="rollback-{earlier.pk}"') :].split("</form>")[0]
    assert "ROC AUC 0.600 below 0.95" in row_form and text.count("ROC AUC 0.600 below") == 1
    assert ModelVersion.objects.get(is_active=True) == v2

    done = client.post(url, {"override_reason": "v2 misreads portable films"}, follow=True)
    assert "Rolled back. v1 is active" in done.content.decode()
    assert ModelVersion.objects.get(is_active=True) == v1
    assert Activation.objects.first().override_reason == "v2 misreads portable films"
