"""The review page as a reading room, in Chromium at a laptop's 1366 x 768 and a diagnostic
monitor's 2560 x 1440: the first image's viewport covers at least half (laptop) or 60 %
(monitor) of the window with no scrolling, under a one-line case bar, beside the thumbnail
strip and the docked report; layouts 1 x 1, 1 x 2 and 2 x 2; the report panel folds away
and stays folded; a prior of the same patient opens beside the current image, its window
and zoom linked on request; no console error on any of it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from accounts import roles
from diagnosis import services
from diagnosis.models import Case
from tests.support import factories
from tests.support.cut_text import CUT_TEXT_JS
from tests.support.radiographs import radiographs_root

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
ORIGINALS = radiographs_root() / "originals"
SIZES = [pytest.param(1366, 768, 0.5, id="1366x768"), pytest.param(2560, 1440, 0.6, id="2560x1440")]


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def _case(patient: str, files: list[str], *, issuer: str = "", days_ago: int = 0, **kwargs) -> Case:
    """An analysed case of real radiographs (the JPEG originals, shown as they are)."""
    case = factories.CaseFactory(
        patient_id=patient,
        issuer_of_patient_id=issuer,
        study_at=timezone.now() - timedelta(days=days_ago),
        **kwargs,
    )
    for number, name in enumerate(files):
        data = (ORIGINALS / name).read_bytes()
        probability = 0.91 if "PNEUMONIA" in name else 0.12
        factories.PredictionFactory(
            image__case=case,
            image__name=Path(name).stem,
            image__view_position="PA" if number == 0 else "AP",
            image__original=ContentFile(data, name="x.jpeg"),
            image__original_format="jpeg",
            image__preview=ContentFile(data, name="p.jpg"),
            probability=probability,
            label="PNEUMONIA" if probability >= 0.5 else "NORMAL",
            heatmap=None,
        )
    return services.case_refresh_status(case_id=case.pk)


STUDY = [
    "PNEUMONIA/person579_bacteria_2383.jpeg",
    "PNEUMONIA/person1073_bacteria_3008.jpeg",
    "NORMAL/IM-0316-0001.jpeg",
]

# The share of the window the first image's viewport covers, and what would scroll.
GEOMETRY = """() => {
  const v = window.chestnetViewers[0];
  const box = v.element.getBoundingClientRect();
  const w = Math.max(0, Math.min(box.right, innerWidth) - Math.max(box.left, 0));
  const h = Math.max(0, Math.min(box.bottom, innerHeight) - Math.max(box.top, 0));
  const page = document.scrollingElement;
  const bar = document.querySelector(".rr-bar").getBoundingClientRect();
  return {
    share: (w * h) / (innerWidth * innerHeight), box: [box.left, box.top, box.width, box.height],
    scrolls: page.scrollHeight > innerHeight || page.scrollWidth > innerWidth,
    bar: bar.height, background: getComputedStyle(document.body).backgroundColor,
  };
}"""


def _radiologist(login, base: str, name: str, width: int, height: int):
    factories.UserFactory(username=name, role=roles.RADIOLOGIST)
    page = login(base, name)
    page.set_viewport_size({"width": width, "height": height})
    page.errors = []
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("response", lambda r: r.status >= 400 and page.errors.append(f"{r.status} {r.url}"))
    return page


def _ready(page, count: int) -> None:
    shown = ".rr-cell:not([hidden]) .cn-viewer.cn-ready"
    page.wait_for_function(
        f"() => document.querySelectorAll('{shown}').length === {count}",
        timeout=30_000,
    )


def _shown_viewports(page) -> list[list[float]]:
    return page.evaluate(
        """() => [...document.querySelectorAll('.rr-cell:not([hidden]) [data-viewport]')]
          .map((el) => el.getBoundingClientRect())
          .map((b) => [b.left, b.top, b.width, b.height])"""
    )


@pytest.mark.parametrize(("width", "height", "share"), SIZES)
def test_the_first_image_fills_the_window_in_every_layout(login, live_server, width, height, share):
    case = _case("RR-1", STUDY, age=3, urgency=Case.Urgency.URGENT)
    page = _radiologist(login, live_server.url, f"room-{width}", width, height)
    page.goto(f"{live_server.url}/cases/{case.pk}/review/")
    _ready(page, 1)
    page.screenshot(path=str(SHOTS / f"20-reading-room-{width}.png"))
    seen = page.evaluate(GEOMETRY)
    assert seen["share"] >= share, seen
    assert not seen["scrolls"], seen
    assert page.evaluate(CUT_TEXT_JS) == []
    assert seen["bar"] <= 48, f"the case bar is {seen['bar']} px high: more than one line"
    red, green, blue = (int(part) for part in seen["background"][4:-1].split(",")[:3])
    assert max(red, green, blue) < 40, f"the review page is not dark: {seen['background']}"
    bar = page.inner_text(".rr-bar")
    for fact in ("RR-1", "3 y", "Urgent", "PNEUMONIA", "P 0.91", "Decision support only"):
        assert fact in bar, (fact, bar)
    strip = page.inner_text(".rr-strip")
    for fact in ("person579_bacteria_2383", "PA", "AP", "NORMAL 0.12"):
        assert fact in strip, (fact, strip)

    # The intended use in full, on demand.
    assert page.locator("#intended-use-text").is_hidden()
    page.click("[data-use-toggle]")
    assert "not a diagnosis" in page.inner_text("#intended-use-text")
    page.keyboard.press("Escape")
    assert page.locator("#intended-use-text").is_hidden()

    # 1 x 2 and 2 x 2: the study's images side by side, each viewport inside the window.
    for layout, cells in (("1x2", 2), ("2x2", 3)):
        page.click(f"[data-layout-choice='{layout}']")
        _ready(page, cells)
        boxes = _shown_viewports(page)
        assert len(boxes) == cells
        for left, top, w, h in boxes:
            assert left >= 0 and top >= 0 and left + w <= width and top + h <= height, boxes
            assert w > 200 and h > 150, boxes
        assert not page.evaluate(GEOMETRY)["scrolls"]
        assert page.evaluate(CUT_TEXT_JS) == [], layout
    lefts = sorted({round(box[0]) for box in boxes})
    tops = sorted({round(box[1]) for box in boxes})
    assert len(lefts) == 2 and len(tops) == 2, boxes  # two columns, two rows
    page.screenshot(path=str(SHOTS / f"21-reading-room-2x2-{width}.png"))

    # The strip picks the image of the first cell; the layout is remembered.
    page.click("[data-layout-choice='1x1']")
    third = case.images.order_by("pk").last()
    page.click(f"[data-show-image='{third.pk}']")
    _ready(page, 1)
    assert page.locator(f"#image-{third.pk}").is_visible()
    assert page.get_attribute(f"[data-show-image='{third.pk}']", "aria-pressed") == "true"

    # The report folds away (the image grows) and stays folded on the next page; Alt+R
    # brings it back with the focus in it.
    before = page.evaluate(GEOMETRY)["box"]
    page.click("[data-report-toggle]")
    assert page.locator("#report-panel").is_hidden()
    wider = f"v => v.element.getBoundingClientRect().width > {before[2] + 100}"
    page.wait_for_function(f"() => window.chestnetViewers.some({wider})")
    page.reload()
    _ready(page, 1)
    assert page.locator("#report-panel").is_hidden()
    page.keyboard.press("Alt+r")
    assert page.locator("#report-panel").is_visible()
    assert page.evaluate("document.getElementById('report-panel').contains(document.activeElement)")
    assert page.errors == []


@pytest.mark.parametrize(("width", "height", "share"), SIZES)
def test_a_prior_opens_beside_the_current_image_with_linked_window_and_zoom(
    login, live_server, width, height, share
):
    current = _case("RR-2", STUDY[:1], issuer="HOSP-A")
    prior = _case("RR-2", STUDY[2:], issuer="HOSP-A", days_ago=40, status=Case.Status.REPORTED)
    factories.ReviewFactory(case=prior, finding="normal", report="Clear lungs, no consolidation.")
    _case("RR-2", STUDY[1:2], issuer="HOSP-B", days_ago=20)  # same ID, another issuer
    _case("RR-2", STUDY[1:2], issuer="HOSP-A", days_ago=-3)  # a later study: no prior
    page = _radiologist(login, live_server.url, f"priors-{width}", width, height)
    page.goto(f"{live_server.url}/cases/{current.pk}/review/")
    _ready(page, 1)

    priors = page.locator("[data-prior-case]")
    assert priors.count() == 1
    listed = priors.inner_text()
    assert prior.study_time.strftime("%Y-%m-%d") in listed and "Normal" in listed
    page.click(".rr-prior-report summary")
    assert "Clear lungs, no consolidation." in priors.inner_text()

    image = prior.images.get()
    page.click(f"[data-open-prior='{image.pk}']")
    _ready(page, 2)
    assert page.get_attribute("#rr-grid", "data-layout") == "1x2"
    assert page.get_attribute(f"[data-open-prior='{image.pk}']", "aria-pressed") == "true"
    (left, top, w, h), (left2, top2, w2, h2) = _shown_viewports(page)
    assert left2 > left + w - 1 and abs(top2 - top) < 0.15 * h and abs(w2 - w) < 40, (left, left2)
    assert "Prior" in page.inner_text(f"#prior-image-{image.pk} h2")
    assert page.evaluate(CUT_TEXT_JS) == []

    window = """(index) => {
      const v = window.chestnetViewers[index];
      const { lower, upper } = v.viewport.getProperties().voiRange;
      return [lower, upper, v.viewport.getCamera().parallelScale];
    }"""
    viewers = "window.chestnetViewers.findIndex(v => v.root.closest('[data-prior-image]'))"
    prior_index = page.evaluate(viewers)
    current_index = 1 - prior_index
    focus = f"window.chestnetViewers[{current_index}].element.focus()"
    # Unlinked: the current image's window and zoom leave the prior's alone.
    alone = page.evaluate(window, prior_index)
    page.evaluate(focus)
    page.keyboard.press("Shift+ArrowUp")
    page.keyboard.press("+")
    assert page.evaluate(window, prior_index) == alone
    # Linked: the prior follows at once, and then with every change.
    page.check(f"#prior-image-{image.pk} [data-link-views]")
    changed = """([i, before]) => {
      const range = window.chestnetViewers[i].viewport.getProperties().voiRange;
      return range.lower !== before[0] || range.upper !== before[1];
    }"""
    page.wait_for_function(changed, arg=[prior_index, alone])
    linked = page.evaluate(window, prior_index)
    page.evaluate(focus)
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("+")
    followed = page.evaluate(window, prior_index)
    assert followed[1] - followed[0] != linked[1] - linked[0], "the prior's window did not follow"
    assert followed[2] < linked[2], "the prior's zoom did not follow"
    page.screenshot(path=str(SHOTS / f"22-prior-beside-{width}.png"))

    page.click(f"#prior-image-{image.pk} [data-close-prior]")
    assert page.locator(f"#prior-image-{image.pk}").count() == 0
    assert page.evaluate("window.chestnetViewers.length") == 1
    assert page.get_attribute("#rr-grid", "data-layout") == "1x1"
    assert page.get_attribute(f"[data-open-prior='{image.pk}']", "aria-pressed") == "false"
    assert page.evaluate(f"document.activeElement.dataset.openPrior === '{image.pk}'")
    assert page.errors == []
