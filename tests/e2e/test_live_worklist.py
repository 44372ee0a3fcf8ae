"""The live worklist as a radiologist meets it in a real Chromium (Playwright): a new urgent
case appears on the open page within five seconds without a reload; filters survive a
reload and a return to the page; a case's first image can be looked at, by keyboard, before
claiming it; "claim next" opens the top case of the list as filtered; the page holds from
800 to 2560 pixels wide; and no request leaves the site. Screenshots land in
docs/screenshots/."""

from __future__ import annotations

import io
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from accounts import roles
from diagnosis.models import Case
from tests.support import factories
from tests.support.radiographs import radiographs_root

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
RADIOGRAPHS = radiographs_root()
RADIOLOGIST = "e2e-radiologist"


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def worklist(login, live_server):
    """`worklist()`: a radiologist's page on /worklist/, and the off-site requests it made."""
    factories.UserFactory(username=RADIOLOGIST, role=roles.RADIOLOGIST)
    SHOTS.mkdir(parents=True, exist_ok=True)

    def open_page(width: int = 1400):
        page = login(live_server.url, RADIOLOGIST)
        page.set_viewport_size({"width": width, "height": 900})
        offsite: list[str] = []
        page.on(
            "request",
            lambda request: (
                None if request.url.startswith(live_server.url) else offsite.append(request.url)
            ),
        )
        page.goto(f"{live_server.url}/worklist/")
        return page, offsite

    return open_page


def _case(*, probability: float, urgency: str = "routine", **fields) -> Case:
    """An analysed case as the worker leaves it, its preview a real radiograph (the
    screenshots document the product)."""
    from PIL import Image as PILImage

    case = factories.awaiting_review_case(probability=probability, urgency=urgency, **fields)
    source = sorted(RADIOGRAPHS.glob("chest_xray/train/PNEUMONIA/*.jpeg"))[0]
    with PILImage.open(source) as opened:
        picture = opened.convert("L")
        picture.thumbnail((512, 512))
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
    case.images.get().preview.save("preview", ContentFile(buffer.getvalue()))
    return case


def _rows(page) -> list[int]:
    ids = page.eval_on_selector_all(
        "#worklist-rows tr[data-case-id]", "rows => rows.map(r => r.dataset.caseId)"
    )
    return [int(pk) for pk in ids]


def test_a_new_urgent_case_appears_on_the_open_worklist_without_a_reload(worklist):
    routine = _case(probability=0.35, patient_id="MRN-1001", age=4, sex="M")
    network = _case(
        probability=0.62,
        patient_id="PAT-0042",
        age=2,
        sex="F",
        source="dimse",
        source_ae="ORTHANC",
        accession_number="ACC-1001",
        study_at=timezone.now() - timedelta(minutes=47),
    )
    refused = factories.refused_case(patient_id="MRN-7007", age=5, sex="F")
    page, offsite = worklist()
    assert _rows(page) == [network.pk, routine.pk, refused.pk]
    why = " ".join(page.inner_text(f"tr[data-case-id='{refused.pk}'] .wl-ai").split())
    assert why == "Not analysed by the AI This does not look like a frontal chest radiograph."
    page.evaluate("window.openedOnce = true")  # gone if the page reloads

    urgent = _case(probability=0.91, urgency="urgent", patient_id="MRN-2002", age=3, sex="F")
    started = time.monotonic()
    page.wait_for_selector(
        f"#worklist-rows tr:first-child[data-case-id='{urgent.pk}']", timeout=5000
    )
    assert time.monotonic() - started < 5
    assert page.evaluate("window.openedOnce") is True
    assert _rows(page) == [urgent.pk, network.pk, routine.pk, refused.pk]
    row = page.inner_text(f"tr[data-case-id='{urgent.pk}']")
    for shown in ("Urgent", "MRN-2002", "3 y", "0.91", "flagged", "Claim"):
        assert shown in row, shown
    assert page.inner_text("#worklist-announce") == "1 new case on the worklist."
    page.screenshot(path=str(SHOTS / "08-live-worklist.png"), full_page=True)
    assert offsite == []


def test_filters_persist_a_preview_by_keyboard_and_claim_next_opens_the_top_case(
    worklist, live_server
):
    stat = _case(probability=0.2, urgency="stat", patient_id="MRN-3003")
    urgent_high = _case(probability=0.95, urgency="urgent", patient_id="MRN-4004")
    urgent_low = _case(probability=0.4, urgency="urgent", patient_id="MRN-5005")
    _case(probability=0.99, patient_id="MRN-6006")
    page, offsite = worklist()
    assert _rows(page)[0] == stat.pk

    page.select_option("select[name=urgency]", "urgent")
    page.wait_for_function("location.search === '?urgency=urgent'")
    page.wait_for_selector(f"tr[data-case-id='{stat.pk}']", state="detached")
    assert _rows(page) == [urgent_high.pk, urgent_low.pk]
    page.reload()
    assert page.input_value("select[name=urgency]") == "urgent"
    assert _rows(page) == [urgent_high.pk, urgent_low.pk]
    page.goto(f"{live_server.url}/worklist/")  # back without filters in the URL
    page.wait_for_url("**/worklist/?urgency=urgent")
    assert _rows(page) == [urgent_high.pk, urgent_low.pk]

    # From "Claim next", Tab: the table's scroll region, then the first row's preview.
    page.focus("#claim-next button")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    preview = page.locator(f"tr[data-case-id='{urgent_high.pk}'] [data-preview]")
    assert preview.evaluate("button => button === document.activeElement")
    page.keyboard.press("Enter")
    image = page.locator(f"#wl-preview-{urgent_high.pk} img")
    image.wait_for(state="visible")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    assert preview.get_attribute("aria-expanded") == "true"
    page.screenshot(path=str(SHOTS / "09-worklist-preview.png"), full_page=True)
    page.keyboard.press("Escape")
    image.wait_for(state="hidden")
    assert Case.objects.filter(claimed_by__isnull=False).count() == 0  # looked, not claimed

    page.click("#claim-next button")
    page.wait_for_url(f"**/cases/{urgent_high.pk}/review/")
    assert Case.objects.get(pk=urgent_high.pk).claimed_by.username == RADIOLOGIST
    assert offsite == []


@pytest.mark.parametrize("width", [800, 2560])
def test_the_worklist_holds_from_800_to_2560_pixels_wide(worklist, width):
    for index in range(6):
        _case(
            probability=index / 6,
            urgency=["stat", "urgent", "routine"][index % 3],
            patient_id=f"MRN-{index:04d}",
            source="dimse" if index % 2 else "upload",
            accession_number=f"ACC-{index:04d}" if index % 2 else "",
            source_ae="ORTHANC" if index % 2 else "",
        )
    page, offsite = worklist(width=width)
    # The page never scrolls sideways; at 800 px the table scrolls inside its own region.
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.locator("#claim-next button").is_visible()
    assert page.locator("select[name=sort]").is_visible()
    region = page.locator(".wl-scroll")
    assert region.get_attribute("tabindex") == "0" and region.get_attribute("role") == "region"
    if width == 800:
        page.screenshot(path=str(SHOTS / "10-worklist-800px.png"), full_page=True)
    assert offsite == []
