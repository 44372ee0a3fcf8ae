"""The review page keeps up without a reload, in a real Chromium (Playwright): a radiologist
opens a case still being analysed; its result arrives and the page shows it with the Claim
button; another radiologist claims the case and the page says so; a new image of the study
joins the case and appears in the thumbnail strip, its card (chosen there) with a viewer
started by the viewer bundle (or, where the bundle cannot, the server's preview shown). Each
change is announced in the page's polite live region, the page never navigates, and the
console shows no error. At a monitor's 2560 x 1440 and a laptop's 1366 x 768."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.utils import timezone

from accounts import roles
from diagnosis import services
from diagnosis.models import Case, Image
from tests.support import factories

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RADIOLOGIST = "e2e-radiologist"
OTHER = "e2e-radiologist2"
WAIT_MS = 15000  # a few polls
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def _announced(page) -> str:
    return page.inner_text("#review-announce").strip()


@pytest.mark.parametrize(
    ("viewer_bundle", "width", "height"),
    [(True, 2560, 1440), (False, 1366, 768)],
    ids=["viewer-2560x1440", "preview-1366x768"],
)
def test_results_claims_and_new_images_reach_the_open_review_page(
    login, live_server, viewer_bundle, width, height
):
    factories.UserFactory(username=RADIOLOGIST, role=roles.RADIOLOGIST)
    other = factories.UserFactory(username=OTHER, role=roles.RADIOLOGIST)
    case = factories.CaseFactory(patient_id="LIVE-1")
    image = factories.ImageFactory(case=case, status=Image.Status.PROCESSING)
    services.case_refresh_status(case_id=case.pk)

    page = login(live_server.url, RADIOLOGIST)
    page.set_viewport_size({"width": width, "height": height})
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server.url}/cases/{case.pk}/review/")
    assert "Analysis not complete" in page.inner_text("#report-panel")
    assert page.locator("#claim-form").count() == 0
    region = page.locator("#review-announce")
    assert region.get_attribute("aria-live") == "polite"
    assert page.locator("[aria-live=polite][role=status]").count() == 1  # one for the page
    page.evaluate("window.openedOnce = true")  # gone if the page reloads
    if not viewer_bundle:  # a viewer bundle that cannot start viewers on added images
        page.wait_for_function("typeof window.chestnetViewerStart === 'function'")
        page.evaluate("delete window.chestnetViewerStart")

    # The worker's result: the card shows it and the panel offers the claim.
    Image.objects.filter(pk=image.pk).update(status=Image.Status.DONE, result_at=timezone.now())
    factories.PredictionFactory(image=image, probability=0.87)
    services.case_refresh_status(case_id=case.pk)
    page.wait_for_selector("#claim-form button", timeout=WAIT_MS)
    card = page.locator(f"#image-{image.pk}")
    assert card.locator("[data-live-status]").inner_text() == "Done"
    assert "P(pneumonia) 0.87" in card.locator("[data-live-result]").inner_text()
    assert page.inner_text("#case-status") == "Awaiting review"
    assert "PNEUMONIA P 0.87" in page.inner_text("#case-ai")  # the case bar
    assert "PNEUMONIA 0.87" in page.inner_text(f"[data-thumb='{image.pk}']")  # the strip
    assert (
        _announced(page) == "Image 1: AI result ready. Ready for review: the case can be claimed."
    )

    # Another radiologist claims it: the Claim button goes, the panel says who holds it.
    services.case_claim(case=Case.objects.get(pk=case.pk), user=other)
    page.wait_for_selector("#claimed-by-other", timeout=WAIT_MS)
    assert OTHER in page.inner_text("#claimed-by-other")
    assert page.locator("#claim-form").count() == 0
    assert _announced(page) == f"Case claimed by {OTHER}."

    page.screenshot(path=str(SHOTS / f"23-live-review-{width}.png"))

    # An instance of the study joins the case: its thumbnail in the strip, announced; chosen
    # there, its card, with a viewer or the preview.
    added = factories.ImageFactory(case=case, status=Image.Status.QUEUED, name="lateral")
    services.case_refresh_status(case_id=case.pk)
    thumb = page.locator(f"[data-show-image='{added.pk}']")
    thumb.wait_for(timeout=WAIT_MS)
    assert "2 · lateral" in thumb.inner_text() and "analysing" in thumb.inner_text()
    assert page.locator(".image-card").count() == 2
    thumb.click()
    page.wait_for_selector(f"#image-{added.pk}", timeout=WAIT_MS)
    assert "Image 2 · lateral" in page.inner_text(f"#image-title-{added.pk}")
    assert page.inner_text("#image-count") == "2 images"
    assert _announced(page).startswith("New image: image 2.")
    if viewer_bundle:
        page.wait_for_selector(f"#image-{added.pk} .cn-viewer.cn-ready", timeout=WAIT_MS)
    else:
        preview = page.locator(f"#image-{added.pk} .cn-preview-only img[data-fallback]")
        preview.wait_for(state="visible", timeout=WAIT_MS)
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=preview.element_handle()
        )

    assert page.evaluate("window.openedOnce") is True  # no navigation happened
    assert errors == []
