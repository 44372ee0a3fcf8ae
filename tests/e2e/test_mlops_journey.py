"""An admin grows the data, trains, reviews and rolls out a model in a real Chromium; a
clinician's next upload is then analysed by that version. Real broker, a real inference
worker and a real training worker (separate `training` queue). Screenshots land in
docs/screenshots/ (mlops-*.png)."""

from __future__ import annotations

from pathlib import Path

import pytest

from accounts import roles
from diagnosis.models import Case
from mlops.models import TrainingRun
from registry.models import ModelVersion
from tests.support import factories
from tests.support.datasets import zip_bytes
from tests.support.radiographs import radiographs_root

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RADIOGRAPHS = radiographs_root()
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _small_zip(path: Path) -> Path:
    """20 + 20 real radiographs."""
    entries = {}
    for label in ("NORMAL", "PNEUMONIA"):
        for file in sorted(RADIOGRAPHS.glob(f"chest_xray/train/{label}/*.jpeg"))[:20]:
            entries[f"{label}/{file.name}"] = file.read_bytes()
    assert len(entries) == 40
    entries["__MACOSX/NORMAL/._junk"] = b"resource fork"  # skipped, with a reason
    path.write_bytes(zip_bytes(entries))
    return path


def _an_unseen_radiograph() -> bytes:
    return sorted(RADIOGRAPHS.glob("chest_xray/train/PNEUMONIA/*.jpeg"))[30].read_bytes()


def test_admin_imports_trains_activates_and_new_uploads_use_the_version(
    login, live_server, worker, training_worker, tmp_path
):
    factories.UserFactory(username="e2e-admin", role=roles.ADMIN)
    factories.UserFactory(username="e2e-clinician", role=roles.CLINICIAN)
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = live_server.url

    page = login(base, "e2e-admin")
    page.click("text=Models")
    page.fill("input[name=name]", "pediatric-batch-1")
    page.click("text=Create dataset")
    page.wait_for_url("**/mlops/datasets/*/")
    page.set_input_files("input[name=archive]", str(_small_zip(tmp_path / "batch.zip")))
    page.click("#import-form button[type=submit]")
    page.wait_for_url("**/mlops/imports/*/")
    page.wait_for_selector("#import-status.done", timeout=120_000)  # live, no reload
    assert "40 imported" in page.inner_text("#import-summary")
    page.screenshot(path=str(SHOTS / "mlops-01-import-summary.png"), full_page=True)

    page.click("text=pediatric-batch-1")
    page.fill("#split-form input[name=seed]", "42")
    page.click("#split-form button[type=submit]")
    page.wait_for_selector("text=Splits assigned by patient with seed 42")
    page.wait_for_load_state("networkidle")  # the thumbnails
    page.screenshot(path=str(SHOTS / "mlops-02-dataset.png"), full_page=True)

    for name, value in (("epochs", "2"), ("image_size", "64"), ("width", "16"), ("stages", "2")):
        page.fill(f"#train-form input[name={name}]", value)
    page.click("#train-form button[type=submit]")
    page.wait_for_url("**/mlops/runs/*/")
    finished = "#run-status.succeeded, #run-status.failed, #run-status.cancelled"
    page.wait_for_selector(finished, timeout=600_000)  # live progress, no reload
    assert page.inner_text("#run-status") == "succeeded", page.inner_text("#run-root")
    assert page.locator("#chart-loss circle.point.loss").count() == 2
    page.wait_for_selector("#run-version a")
    page.screenshot(path=str(SHOTS / "mlops-03-training-run.png"), full_page=True)
    run = TrainingRun.objects.get()
    assert len(run.history) == 2

    page.click("#run-version a")
    page.wait_for_selector(".evaluation img[alt=roc]")
    page.screenshot(path=str(SHOTS / "mlops-04-version-report.png"), full_page=True)
    # A two-epoch model on a 40-image dataset falls below the activation floors (AUC,
    # sensitivity, specificity, 200 test images): refused, with the floors it failed.
    page.select_option("select[name=operating_point]", "card")
    page.click("#activate-form button[type=submit]")
    page.wait_for_selector("#override-field textarea[name=override_reason]")
    refusal = page.inner_text(".flash.error")
    assert "was not activated" in refusal and "fewer than 200" in refusal, refusal
    assert not ModelVersion.objects.filter(training_run=run, is_active=True).exists()
    page.screenshot(path=str(SHOTS / "mlops-05a-activation-refused.png"), full_page=True)
    # The admin activates it anyway, with a reason: recorded with the activation.
    reason = "End-to-end test site: no patients, the journey needs a trained version."
    page.fill("#override-field textarea[name=override_reason]", reason)
    page.click("#activate-form button[type=submit]")
    page.wait_for_selector("#active-badge")
    assert reason in page.inner_text("#activation-history")
    version = ModelVersion.objects.get(is_active=True)
    assert version.training_run == run
    assert version.activations.get().override_reason == reason
    page.screenshot(path=str(SHOTS / "mlops-05-version-activated.png"), full_page=True)

    clinician = login(base, "e2e-clinician")
    clinician.goto(f"{base}/cases/new/")
    (tmp_path / "chest.png").write_bytes(_an_unseen_radiograph())
    clinician.set_input_files("input[name=images]", [str(tmp_path / "chest.png")])
    clinician.click("#case-form button[type=submit]")
    clinician.wait_for_url("**/cases/*/")
    clinician.wait_for_selector("#case-status.awaiting_review", timeout=180_000)
    assert f"model {version.version}" in clinician.inner_text("[data-result]")
    clinician.screenshot(path=str(SHOTS / "mlops-06-upload-uses-new-version.png"), full_page=True)
    assert Case.objects.get().images.get().prediction.model_version == version.version

    page.goto(f"{base}/mlops/versions/")
    page.screenshot(path=str(SHOTS / "mlops-07-versions.png"), full_page=True)
