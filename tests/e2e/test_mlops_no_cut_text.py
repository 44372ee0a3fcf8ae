"""No text is cut on the model registry's pages (issue 23), in a real Chromium at 1366x768
and at 2560x1440: a version's page (its operating point, the validation operating points,
the activation history, the test evaluation, the card), the refused activation with its
message, the versions list and the site calibration pages. No training and no worker: the
versions are artifact-shaped files with the cards training and site calibration write, the
evaluation and the calibration are rows as the workers leave them. Screenshots:
docs/screenshots/mlops-12-version-1366.png and mlops-13-version-2560.png."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import File
from django.core.files.storage import default_storage

from accounts import roles
from ml import metrics
from ml.artifact import write_card
from mlops import calibration
from mlops import services as mlops_services
from mlops.execute.calibration import decision_figures, held_back_validation
from mlops.models import Evaluation, SiteCalibration
from registry import services as registry
from registry.models import ModelVersion
from tests.support import factories
from tests.support.cut_text import CUT_TEXT_JS
from tests.support.site_cases import SiteCase, site_cases

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SIZES = ((1366, 768), (2560, 1440))
TRAINED = "20261130-2231-resnet64-run1"
BASE = "base-1"
SITE = "E2E children's hospital"
# The threshold rules training (ml.train) and site calibration (ml.calibrate) write on a
# card: a "card" activation's operating point quotes them, longer than the 100 characters
# its column stores.
RULE = (
    "Highest threshold with sensitivity >= 0.97 on the batch-level validation split (a "
    "missed pneumonia costs more than a second look)."
)
SITE_RULE = (
    "Highest threshold with sensitivity >= 0.97 on the site's own labelled images (site "
    f"calibration at {SITE}; a missed pneumonia costs more than a second look)."
)


def _artifact(folder: Path, card: dict) -> Path:
    """Artifact-shaped files with `card` as their card (the pages never load the model)."""
    path = folder / card["version"] / "model.keras"
    path.parent.mkdir(parents=True)
    path.write_bytes(card["version"].encode() * 10)
    common = {"image_size": 64, "labels": ["NORMAL", "PNEUMONIA"], "preprocessing_version": "1"}
    write_card(path, {**common, **card})
    return path


def _scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 2, n).astype(float)
    return targets, np.clip(0.35 * targets + rng.uniform(0, 0.65, n), 0, 1)


def _trained_version(folder: Path, admin) -> ModelVersion:
    """A version trained here with its validation operating points, and a finished test
    evaluation on 60 images (below the floors' 200), its metrics and plots as the worker
    stores them (ml.evaluate.write_report draws the plots)."""
    from ml.evaluate import write_report

    targets, scores = _scores(120, seed=1)
    threshold = metrics.threshold_for_sensitivity(targets, scores, 0.97)
    validation = metrics.summary(targets, scores, threshold, bootstrap=50)
    validation["operating_points"] = metrics.operating_points(targets, scores)
    card = {"version": TRAINED, "threshold": threshold, "threshold_rule": RULE}
    version = registry.version_register(
        path=_artifact(folder, {**card, "validation": validation}), origin="trained"
    )
    targets, scores = _scores(60, seed=2)
    summary = metrics.summary(targets, scores, threshold, bootstrap=50)
    summary["operating_points"] = metrics.operating_points(targets, scores, limit=60)
    write_report(folder / "report", targets, scores, summary)
    plots = {}
    for plot in Evaluation.PLOTS:
        with (folder / "report" / f"{plot}.png").open("rb") as handle:
            plots[plot] = default_storage.save(f"evaluations/e2e/{plot}.png", File(handle))
    Evaluation.objects.create(
        version=version,
        dataset=mlops_services.dataset_create(name="pediatric-batch-1", user=admin),
        items_sha256="0" * 64,
        status=Evaluation.Status.DONE,
        metrics=summary,
        plots=plots,
    )
    return version


def _site_calibration(folder: Path, admin) -> SiteCalibration:
    """The shipped base, active at 0.2, 220 signed site cases it read, and a finished
    calibration of it into a new version (figures and card as the worker makes them)."""
    base = registry.version_register(
        path=_artifact(folder, {"version": BASE, "threshold": 0.2, "threshold_rule": RULE}),
        origin="shipped",
    )
    registry.version_activate(version=base, user=None)
    rng = np.random.default_rng(7)
    specs = [
        SiteCase((float(p),), finding=finding, version=BASE, threshold=0.2)
        for finding, low, high in (("normal", 0.02, 0.5), ("pneumonia", 0.35, 0.99))
        for p in rng.uniform(low, high, 110)
    ]
    site_cases(
        specs,
        owner=factories.UserFactory(username="e2e-clinician", role=roles.CLINICIAN),
        radiologist=factories.UserFactory(username="e2e-radiologist", role=roles.RADIOLOGIST),
    )
    job = calibration.calibration_create(
        version=base, filters=calibration.CalibrationFilters(modality="CR"), user=admin, site=SITE
    )
    held = [calibration.CalibrationItem.from_row(row) for row in job.items]
    held = [item for item in held if item.held_back]
    targets = np.array([item.truth for item in held], float)
    scores = np.array([item.probability for item in held])
    after = decision_figures(targets, scores, thresholds=np.full(len(held), 0.41))
    card = {
        "version": f"{BASE}-site-20261207-{job.pk}",
        "threshold": 0.41,
        "threshold_rule": SITE_RULE,
        "validation": held_back_validation(targets, scores, 0.41, after=after),
    }
    SiteCalibration.objects.filter(pk=job.pk).update(
        status=SiteCalibration.Status.DONE,
        new_version=registry.version_register(path=_artifact(folder, card), origin="calibrated"),
        fit={"scale": 1.21, "shift": -0.43, "threshold": 0.41, "target_sensitivity": 0.97},
        before=decision_figures(targets, scores, thresholds=np.full(len(held), 0.2)),
        after=after,
    )
    job.refresh_from_db()
    return job


def _errors(page) -> list[str]:
    """The page's console errors and uncaught exceptions, from now on."""
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def _refuse(page, url: str) -> None:
    """Ask to activate the version at its card's threshold: refused by the floors."""
    page.goto(url)
    page.select_option("select[name=operating_point]", "card")
    page.click("#activate-form button[type=submit]")
    page.wait_for_selector("#override-field textarea[name=override_reason]")
    assert "was not activated" in page.inner_text(".flash.error")


def test_no_text_is_cut_on_the_registry_pages(login, live_server, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    admin = factories.UserFactory(username="e2e-admin", role=roles.ADMIN)
    trained = _trained_version(tmp_path, admin)
    job = _site_calibration(tmp_path, admin)
    base = live_server.url
    version_page = f"{base}/mlops/versions/{trained.pk}/"
    SHOTS.mkdir(parents=True, exist_ok=True)

    page = login(base, "e2e-admin")
    errors = _errors(page)
    # Activated below the floors at the card's threshold: its page then quotes the card's
    # operating point, and the history holds the shipped base's and its activations.
    _refuse(page, version_page)
    page.fill("#override-field textarea[name=override_reason]", "End-to-end test site.")
    page.click("#activate-form button[type=submit]")
    page.wait_for_selector("#active-badge")
    pages = {
        "the version page": version_page,
        "the versions list": f"{base}/mlops/versions/",
        "the calibration form": f"{base}/mlops/versions/{job.base_version.pk}/calibrate/?"
        f"modality=CR&holdout_percent=30&target_sensitivity=0.97&site={SITE}",
        "the calibration's page": f"{base}/mlops/calibrations/{job.pk}/",
        "the calibrated version": f"{base}/mlops/versions/{job.new_version.pk}/",
    }
    cut: list[str] = []

    def look(where: str, width: int) -> None:
        page.wait_for_load_state("networkidle")  # the plots
        page.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")
        cut.extend(f"{width}px, {where}: {line}" for line in page.evaluate(CUT_TEXT_JS))
        cut.extend(f"{width}px, {where}: console error {line}" for line in errors)
        errors.clear()

    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        _refuse(page, f"{base}/mlops/versions/{job.new_version.pk}/")
        look("the refused activation", width)
        for where, url in pages.items():
            page.goto(url)
            if where == "the version page":
                page.wait_for_load_state("networkidle")
                shot = "mlops-12-version-1366.png" if width == 1366 else "mlops-13-version-2560.png"
                page.screenshot(path=str(SHOTS / shot), full_page=True)
                active = page.inner_text("p:has(#active-threshold)")  # "Active since..."
                if f"card default: {RULE}" not in active:
                    cut.append(f"{width}px, the operating point is not whole: {active}")
            look(where, width)
    assert cut == [], "\n".join(cut)
