"""The clinician → worker → radiologist journey in a real Chromium (Playwright), against a
live server, a real broker and a real worker. Screenshots land in docs/screenshots/."""

from __future__ import annotations

from pathlib import Path

import pytest

from accounts import roles
from diagnosis.models import Case, Review
from tests.support import factories
from tests.support.radiographs import radiographs_root

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RADIOGRAPHS = radiographs_root()
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def worker_env(worker_env: dict[str, str]) -> dict[str, str]:
    """The shipped model, not the tiny one: this journey's screenshots document the product."""
    from ml.artifact import DEFAULT_ARTIFACT

    return {**worker_env, "CHESTNET_MODEL_PATH": str(DEFAULT_ARTIFACT)}


def _a_dicom_radiograph() -> bytes:
    """A real radiograph as a 12-bit MONOCHROME2 DICOM, as a modality would send it."""
    import io

    import numpy as np
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    source = sorted(RADIOGRAPHS.glob("originals/NORMAL/*.jpeg"))[0]
    picture = Image.open(source).convert("L")
    picture.thumbnail((1024, 1024))
    pixels = (np.asarray(picture, dtype=np.uint16) * 16).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.Modality = "DX"
    ds.set_pixel_data(pixels, "MONOCHROME2", 12)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _a_radiograph() -> bytes:
    """A real radiograph (the screenshots document the product)."""
    return sorted(RADIOGRAPHS.glob("chest_xray/*/PNEUMONIA/*.jpeg"))[0].read_bytes()


def test_upload_live_result_review_and_sign(login, live_server, worker, tmp_path):
    factories.UserFactory(username="e2e-clinician", role=roles.CLINICIAN)
    factories.UserFactory(username="e2e-radiologist", role=roles.RADIOLOGIST)
    SHOTS.mkdir(parents=True, exist_ok=True)
    (tmp_path / "chest.png").write_bytes(_a_radiograph())
    (tmp_path / "chest.dcm").write_bytes(_a_dicom_radiograph())
    (tmp_path / "notes.txt").write_bytes(b"not an image")

    page = login(live_server.url, "e2e-clinician")
    page.goto(f"{live_server.url}/cases/new/")
    page.fill("input[name=patient_id]", "E2E-1")
    page.check("input[name=urgency][value=urgent]")
    page.set_input_files(
        "input[name=images]", [str(tmp_path / "chest.png"), str(tmp_path / "notes.txt")]
    )
    page.click("#case-form button[type=submit]")
    page.wait_for_selector("text=notes.txt: The file is not a readable")
    page.screenshot(path=str(SHOTS / "01-upload-rejected.png"), full_page=True)
    assert Case.objects.count() == 0

    page.set_input_files(
        "input[name=images]", [str(tmp_path / "chest.png"), str(tmp_path / "chest.dcm")]
    )
    page.click("#case-form button[type=submit]")
    page.wait_for_url("**/cases/*/")
    page.wait_for_selector("#case-status.awaiting_review", timeout=180_000)  # no reload
    page.wait_for_selector("[data-heatmap]:not([hidden])")
    assert "not a diagnosis" in page.inner_text(".intended-use")
    # The heatmap file is smaller than the preview; on the page it covers the radiograph.
    for card in page.query_selector_all("[data-viewer]:has([data-heatmap]:not([hidden]))"):
        card.wait_for_selector("[data-heatmap]:not([hidden])")
        page.wait_for_function(
            "el => el.complete && el.naturalWidth > 0", arg=card.query_selector("[data-heatmap]")
        )
        shown = card.query_selector("[data-radiograph]").bounding_box()
        layer = card.query_selector("[data-heatmap]").bounding_box()
        assert shown and layer and shown["width"] > 100
        for key in ("x", "y", "width", "height"):
            assert abs(shown[key] - layer[key]) <= 1.5, (key, shown, layer)
    page.screenshot(path=str(SHOTS / "02-case-result.png"), full_page=True)
    case = Case.objects.get()

    rad = login(live_server.url, "e2e-radiologist")
    errors: list[str] = []  # the reading room's console: no error on the way
    rad.on("console", lambda message: message.type == "error" and errors.append(message.text))
    rad.on("pageerror", lambda error: errors.append(str(error)))
    rad.goto(f"{live_server.url}/worklist/")
    rad.screenshot(path=str(SHOTS / "03-worklist.png"), full_page=True)
    rad.click(f"tr[data-case-id='{case.pk}'] button:has-text('Claim')")
    rad.wait_for_url(f"**/cases/{case.pk}/review/")
    rad.wait_for_selector(".cn-viewer.cn-ready >> nth=0")
    rad.click("[data-zoom-in] >> nth=0")
    rad.check("[data-invert] >> nth=0")
    rad.fill("[data-overlay-opacity] >> nth=0", "80")
    rad.screenshot(path=str(SHOTS / "04-review.png"), full_page=True)
    for image in case.images.filter(status="done"):  # one answer beside each image
        rad.click(f"[data-show-image='{image.pk}']")  # the strip shows it
        rad.check(f"input[name=agrees_{image.pk}][value=no]")
    rad.check("input[name=finding][value=other]")
    rad.fill("textarea[name=report]", "Right perihilar opacity; clinical correlation advised.")
    rad.click("#review-form button[type=submit]")
    rad.wait_for_selector("text=Report signed.")
    assert Review.objects.get(case=case).finding == "other"
    assert errors == []

    page.wait_for_selector("#case-status.reported", timeout=30_000)
    page.wait_for_selector("text=Right perihilar opacity")
    assert "Finding: Other" in page.inner_text("#report")  # in words, with the signing time
    assert " on 20" in page.inner_text("#report")
    # The open page says, beside each analysed image, that the radiologist disagreed.
    for image in case.images.filter(status="done"):
        line = page.locator(f"[data-image-id='{image.pk}'] [data-agreement]")
        assert line.inner_text() == "The radiologist disagrees with the AI on this image."
    report_top = page.locator("#report").bounding_box()["y"]
    assert report_top < page.locator(".image-card >> nth=0").bounding_box()["y"]
    page.screenshot(path=str(SHOTS / "05-clinician-sees-report.png"), full_page=True)

    # The administrator reads the audit trail of the case: who viewed, claimed and signed.
    factories.UserFactory(username="e2e-admin", role=roles.ADMIN)
    admin = login(live_server.url, "e2e-admin")
    admin.goto(f"{live_server.url}/audit/?case={case.pk}")
    trail = admin.inner_text("#audit-table")
    for action in ("Claimed", "Signed", "Viewed", "Viewed file", "Listed"):
        assert action in trail, action
    assert "E2E-1" not in trail  # no patient identifier in the trail
    admin.screenshot(path=str(SHOTS / "06-audit-trail.png"), full_page=True)
