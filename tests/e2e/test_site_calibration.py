"""An admin calibrates the active version to the site's signed cases in a real Chromium,
reads the before/after figures on the held-back cases, is refused by the activation floors
(too few held-back images), activates it with an override reason and sees it active. A
real broker and a real worker do the calibration. Screenshots land in docs/screenshots/
(mlops-08..11)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from accounts import roles
from devtools.workers import stop_worker
from mlops.models import SiteCalibration
from registry import services as registry
from registry.models import ModelVersion
from tests.support import factories
from tests.support.datasets import start_training_worker
from tests.support.site_cases import SiteCase, site_cases

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
BASE = "tiny-test-0"  # the tiny artifact's version (devtools.tiny_artifact)


@pytest.fixture(scope="module")
def calibration_worker(worker_env, tmp_path_factory):
    """A worker like `make run`'s training worker; it also takes the default queue, where
    the calibration task goes while no route names it."""
    folder = tmp_path_factory.mktemp("calibration-worker")
    env = {**worker_env, "CHESTNET_TRAINING_WORK_DIR": str(folder / "work")}
    process = start_training_worker(log=folder / "worker.log", env=env, queues="training,celery")
    yield process
    stop_worker(process)


def _signed_site_cases() -> None:
    """110 children per class read by the active version at its threshold of 0.2, which
    flags most healthy ones; CR images from one manufacturer, and a few DX from another."""
    rng = np.random.default_rng(7)
    owner = factories.UserFactory(username="e2e-clinician", role=roles.CLINICIAN)
    reader = factories.UserFactory(username="e2e-radiologist", role=roles.RADIOLOGIST)
    specs = [
        SiteCase((float(p),), finding=finding, version=BASE, threshold=0.2)
        for finding, low, high in (("normal", 0.02, 0.5), ("pneumonia", 0.35, 0.99))
        for p in rng.uniform(low, high, 110)
    ]
    specs += [
        SiteCase((0.6,), finding="normal", version=BASE, modality="DX", manufacturer="Other"),
        SiteCase((0.9,), finding="other", version=BASE),  # neither label: left out
    ]
    site_cases(specs, owner=owner, radiologist=reader)


def test_admin_calibrates_the_active_version_and_rolls_it_out_through_the_floors(
    login, live_server, calibration_worker, tiny_model_path
):
    factories.UserFactory(username="e2e-admin", role=roles.ADMIN)
    base = registry.version_register(path=tiny_model_path, origin="shipped")
    registry.version_activate(version=base, user=None)
    _signed_site_cases()
    SHOTS.mkdir(parents=True, exist_ok=True)

    page = login(live_server.url, "e2e-admin")
    page.goto(f"{live_server.url}/mlops/versions/{base.pk}/")
    page.click("#calibrate-link")
    page.wait_for_selector("#calibration-preview")
    page.fill("#calibration-filters input[name=modality]", "CR")
    page.fill("#calibration-filters input[name=site]", "E2E children's hospital")
    page.click("#calibration-filters button[type=submit]")
    page.wait_for_url("**modality=CR**")
    fitting = int(page.inner_text("#count-fitting td:nth-child(2)"))
    held = int(page.inner_text("#count-held-back td:nth-child(2)"))
    assert fitting + held == 110  # the DX image and the "other" report are left out
    page.screenshot(path=str(SHOTS / "mlops-08-site-calibration-form.png"), full_page=True)

    page.click("#calibration-form button[type=submit]")
    page.wait_for_url("**/mlops/calibrations/*/")
    page.wait_for_selector("#calibration-status.done, #calibration-status.failed", timeout=180_000)
    job = SiteCalibration.objects.get()
    assert job.status == "done", job.error
    table = page.inner_text("#before-after")
    assert "Specificity" in table and "–" in table  # with its interval
    assert job.after["specificity"]["value"] > job.before["specificity"]["value"]
    page.screenshot(path=str(SHOTS / "mlops-09-site-calibration-result.png"), full_page=True)

    page.click("#calibration-version a")
    page.wait_for_selector("#site-calibration")
    assert BASE in page.inner_text("#calibration-base")
    page.select_option("select[name=operating_point]", "card")
    page.click("#activate-form button[type=submit]")
    page.wait_for_selector("#override-field textarea[name=override_reason]")
    refusal = page.inner_text(".flash.error")
    assert "was not activated" in refusal and "held-back site cases" in refusal, refusal
    assert "fewer than 200" in refusal, refusal
    assert not ModelVersion.objects.get(pk=job.new_version_id).is_active
    page.screenshot(path=str(SHOTS / "mlops-10-calibrated-version-refused.png"), full_page=True)

    reason = "Site calibration judged on held-back cases; monitored weekly by the PACS lead."
    page.fill("#override-field textarea[name=override_reason]", reason)
    page.click("#activate-form button[type=submit]")
    page.wait_for_selector("#active-badge")
    assert reason in page.inner_text("#activation-history")
    active = ModelVersion.objects.get(is_active=True)
    assert active.pk == job.new_version_id and active.origin == "calibrated"
    assert active.activations.get().override_reason == reason
    page.screenshot(path=str(SHOTS / "mlops-11-calibrated-version-active.png"), full_page=True)
