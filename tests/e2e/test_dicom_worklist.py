"""A study that arrived over the DICOM network, as the radiologist meets it in a real Chromium
(Playwright): analysed by a real worker, on the worklist with its source (DICOM, the calling
AE title) and accession number, and on the case page with its study. The screenshot lands in
docs/screenshots/."""

from __future__ import annotations

from pathlib import Path

import pytest

from accounts import roles
from devtools import dicom_files
from diagnosis import services
from diagnosis.models import Case, Image
from tests.support import factories

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def worker_env(worker_env: dict[str, str]) -> dict[str, str]:
    """The shipped model, not the tiny one: the screenshot documents the product."""
    from ml.artifact import DEFAULT_ARTIFACT

    return {**worker_env, "CHESTNET_MODEL_PATH": str(DEFAULT_ARTIFACT)}


def _received_from_orthanc(radiograph_set: Path) -> Case:
    """A real pneumonia radiograph as Orthanc would C-STORE it (accession ACC-1001)."""
    jpeg = sorted((radiograph_set / "chest_xray" / "train" / "PNEUMONIA").glob("*.jpeg"))[0]
    ds = dicom_files.radiograph(pixels=dicom_files.chest_pixels(jpeg))
    received = services.instance_receive(
        data=dicom_files.to_bytes(ds), source="dimse", source_ae="ORTHANC"
    )
    return Case.objects.get(pk=received.case_id)


def _offsite_requests(page, base: str) -> list[str]:
    """Every request the page makes that does not go to the live server (no CDN, no beacon)."""
    offsite: list[str] = []

    def note(request) -> None:
        if not request.url.startswith(base):
            offsite.append(request.url)

    page.on("request", note)
    return offsite


def test_radiologist_sees_a_study_received_from_the_pacs_on_the_worklist(
    login, live_server, worker, radiograph_set, wait
):
    factories.UserFactory(username="e2e-radiologist", role=roles.RADIOLOGIST)
    SHOTS.mkdir(parents=True, exist_ok=True)
    case = _received_from_orthanc(radiograph_set)
    wait(lambda: Case.objects.get(pk=case.pk).status == Case.Status.AWAITING_REVIEW)
    assert Image.objects.get(case=case).status == Image.Status.DONE  # analysed, not refused

    page = login(live_server.url, "e2e-radiologist")
    offsite = _offsite_requests(page, live_server.url)
    page.goto(f"{live_server.url}/worklist/")
    row = page.locator(f"tr[data-case-id='{case.pk}']")
    source = row.locator("td[data-source]")
    assert source.locator(".badge.source").inner_text() == "DICOM"
    assert "from ORTHANC" in source.inner_text()
    assert "ACC-1001" in source.inner_text()
    page.screenshot(path=str(SHOTS / "07-dicom-worklist.png"), full_page=True)

    page.goto(f"{live_server.url}/cases/{case.pk}/")
    facts = page.locator("dl.facts")
    assert facts.locator("dt:has-text('Patient') + dd").inner_text() == "PAT-0042"
    assert facts.locator("dt:has-text('Age / sex') + dd").inner_text() == "3 y / Female"
    assert facts.locator("dd[data-source]").inner_text() == "DICOM from ORTHANC · acc. ACC-1001"
    study = facts.locator("dt:has-text('Study') + dd").inner_text()
    assert study == "XR CHEST 1 VIEW · accession ACC-1001"
    assert offsite == []
