"""A radiologist reads and signs a two-image case with the keyboard only (no mouse event is
sent): "claim next" from the worklist, an answer beside each image, the finding, the report
and the signature; the report link (Alt+R) reaches the form from the top of the page."""

from __future__ import annotations

from pathlib import Path

import pytest

from accounts import roles
from diagnosis import services
from diagnosis.models import Review
from tests.support import factories

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def _tab_to(page, selector: str, *, limit: int = 400) -> None:
    """Press Tab until the focused element matches `selector`."""
    for _ in range(limit):
        if page.evaluate(f"document.activeElement.matches({selector!r})"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} never took the focus by Tab")


def test_claim_review_and_sign_with_the_keyboard_only(login, live_server):
    factories.UserFactory(username="kb-radiologist", role=roles.RADIOLOGIST)
    case = factories.CaseFactory(patient_id="KB-1")
    first = factories.PredictionFactory(image__case=case, probability=0.9).image
    second = factories.PredictionFactory(image__case=case, probability=0.3, label="NORMAL").image
    services.case_refresh_status(case_id=case.pk)

    page = login(live_server.url, "kb-radiologist")
    offsite: list[str] = []
    page.on(
        "request",
        lambda request: (
            None
            if request.url.startswith((live_server.url, "blob:", "data:"))
            else offsite.append(request.url)
        ),
    )
    page.goto(f"{live_server.url}/worklist/")
    _tab_to(page, "#claim-next button")
    with page.expect_navigation(url=f"**/cases/{case.pk}/review/"):
        page.keyboard.press("Enter")

    page.wait_for_selector(".cn-viewer.cn-ready >> nth=1")
    for image, answer in ((first, "yes"), (second, "no")):
        _tab_to(page, f"input[name=agrees_{image.pk}]")
        if answer == "no":
            page.keyboard.press("ArrowRight")  # the second option of the radio group
        else:
            page.keyboard.press("Space")
    page.keyboard.press("Alt+r")  # the report link's access key: on to the sign form
    page.wait_for_function("location.hash === '#report-panel'")
    _tab_to(page, "input[name=finding]")
    page.keyboard.press("ArrowRight")  # from "normal" to "pneumonia"
    _tab_to(page, "textarea[name=report]")
    page.keyboard.type("Right lower lobe consolidation on image 1.")
    _tab_to(page, "#review-form button[type=submit]")
    page.screenshot(path=str(SHOTS / "17-keyboard-review.png"), full_page=False)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_selector("text=Report signed.")

    review = Review.objects.get(case=case)
    answers = {entry["image"]: entry.get("agrees") for entry in review.ai_results}
    assert answers == {first.pk: True, second.pk: False}
    assert review.finding == "pneumonia" and review.agrees_with_ai is False
    assert offsite == []  # nothing left the site


def test_the_review_page_is_one_column_at_800_px_and_two_at_1400(login, live_server):
    factories.UserFactory(username="narrow-radiologist", role=roles.RADIOLOGIST)
    case = factories.awaiting_review_case()
    page = login(live_server.url, "narrow-radiologist")
    columns = "getComputedStyle(document.querySelector('.review-layout')).gridTemplateColumns"
    for width, count in ((800, 1), (1400, 2)):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{live_server.url}/cases/{case.pk}/review/")
        assert len(page.evaluate(columns).split()) == count, width
        overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
        assert overflow <= 0, f"{overflow} px wider than the window at {width} px"
    page.set_viewport_size({"width": 800, "height": 900})
    page.goto(f"{live_server.url}/cases/{case.pk}/review/")
    page.screenshot(path=str(SHOTS / "18-review-800px.png"), full_page=False)
