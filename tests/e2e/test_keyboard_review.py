"""A radiologist reads and signs a two-image case with the keyboard only (no mouse event is
sent), at 1366 x 768 and 2560 x 1440: "claim next" from the worklist, each image chosen in
the thumbnail strip with its answer beside it, the finding, the report and the signature;
Alt+R reaches the docked report. The image takes the focus by Tab and every shortcut of the
help works there; the focus never lands on a hidden element."""

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


# The focused element, described, when it cannot be seen (no layout box, in a hidden
# subtree, or invisible): null when it can.
FOCUS_HIDDEN = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const hidden = (el.offsetParent === null && style.position !== "fixed")
    || el.closest("[hidden]") !== null || style.visibility === "hidden";
  return hidden ? el.outerHTML.slice(0, 160) : null;
}"""
FIRST_IMAGE = "document.activeElement === window.chestnetViewers[0].element"


def _tab_to(page, selector: str, *, limit: int = 400) -> None:
    """Press Tab until the focused element matches `selector`; the focus never lands on an
    element that cannot be seen on the way."""
    for _ in range(limit):
        assert page.evaluate(FOCUS_HIDDEN) is None, "the focus is on a hidden element"
        if page.evaluate(f"document.activeElement.matches({selector!r})"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} never took the focus by Tab")


def _console_errors(page) -> list[str]:
    """The page's console errors and uncaught exceptions, from now on."""
    errors: list[str] = []

    def console(message) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


@pytest.mark.parametrize(("width", "height"), [(1366, 768), (2560, 1440)], ids=str)
def test_claim_review_and_sign_with_the_keyboard_only(login, live_server, width, height):
    factories.UserFactory(username="kb-radiologist", role=roles.RADIOLOGIST)
    case = factories.CaseFactory(patient_id="KB-1")
    first = factories.PredictionFactory(image__case=case, probability=0.9).image
    second = factories.PredictionFactory(image__case=case, probability=0.3, label="NORMAL").image
    services.case_refresh_status(case_id=case.pk)

    page = login(live_server.url, "kb-radiologist")
    page.set_viewport_size({"width": width, "height": height})
    errors = _console_errors(page)
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

    page.wait_for_selector(".cn-viewer.cn-ready")
    for image, answer in ((first, "yes"), (second, "no")):
        # The strip shows each image in the layout's first cell (Tab, Enter): its question
        # sits beside it.
        _tab_to(page, f"[data-show-image='{image.pk}']")
        page.keyboard.press("Enter")
        page.wait_for_selector(f"#image-{image.pk} .cn-viewer.cn-ready")
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
    page.screenshot(path=str(SHOTS / f"17-keyboard-review-{width}.png"), full_page=False)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_selector("text=Report signed.")

    review = Review.objects.get(case=case)
    answers = {entry["image"]: entry.get("agrees") for entry in review.ai_results}
    assert answers == {first.pk: True, second.pk: False}
    assert review.finding == "pneumonia" and review.agrees_with_ai is False
    assert offsite == []  # nothing left the site
    assert errors == []


def _viewer(page, expression: str):
    """`expression` evaluated with `v` the first image's Viewer."""
    return page.evaluate(f"(v => {expression})(window.chestnetViewers[0])")


def test_tab_reaches_the_image_and_every_shortcut_works_there_without_a_mouse(login, live_server):
    """Cornerstone leaves the image unreachable by Tab (tabindex -1): the viewer makes it a
    stop with a visible focus ring, where the help's shortcuts work with no click first."""
    factories.UserFactory(username="kb-reader", role=roles.RADIOLOGIST)
    case = factories.awaiting_review_case()
    factories.PredictionFactory(image__case=case, probability=0.2, label="NORMAL")
    page = login(live_server.url, "kb-reader")
    errors = _console_errors(page)
    page.goto(f"{live_server.url}/cases/{case.pk}/review/")
    page.wait_for_selector(".cn-viewer.cn-ready")
    # Both images side by side: the layout's buttons answer the keyboard too.
    _tab_to(page, "[data-layout-choice='1x2']")
    page.keyboard.press("Enter")
    page.wait_for_selector(".cn-viewer.cn-ready >> nth=1")

    _tab_to(page, "[data-viewport]")
    assert page.evaluate(FIRST_IMAGE)
    assert _viewer(page, "v.element.tabIndex") == 0
    assert _viewer(page, "v.element.getAttribute('aria-label')")
    # The ring is drawn over the canvas (by ::after): the element's own outline is under it.
    for part in ("", "::after"):
        style = f"getComputedStyle(v.element, '{part}')"
        ring = _viewer(page, f"(s => [s.outlineStyle, s.outlineWidth])({style})")
        assert ring[0] != "none" and float(ring[1].removesuffix("px")) > 0, (part, ring)
    page.screenshot(path=str(SHOTS / "19-keyboard-image-focus.png"), full_page=False)

    focal = _viewer(page, "v.viewport.getCamera().focalPoint")
    page.keyboard.press("ArrowRight")
    assert _viewer(page, "v.viewport.getCamera().focalPoint") != focal, "ArrowRight did not pan"
    window = "[v.$('[data-wl-width]').textContent, v.$('[data-wl-center]').textContent]"
    before = _viewer(page, window)
    page.keyboard.press("Shift+ArrowUp")
    assert _viewer(page, window) != before, "Shift+ArrowUp did not change the window"
    before = _viewer(page, window)
    page.keyboard.press("Shift+ArrowRight")
    assert _viewer(page, window) != before, "Shift+ArrowRight did not change the window"

    pressed = "v.$('[aria-pressed=true][data-{}]').dataset.{}"
    for key, mode in (("p", "pan"), ("z", "zoom"), ("m", "measure"), ("w", "wl")):
        page.keyboard.press(key)
        assert _viewer(page, pressed.format("mode", "mode")) == mode, key
    for key, preset in (("3", "lung"), ("4", "mediastinum"), ("5", "bone"), ("2", "file")):
        page.keyboard.press(key)
        assert _viewer(page, pressed.format("preset", "preset")) == preset, key
    zoom = "v.viewport.getCamera().parallelScale"
    for key in ("+", "-", "1", "f"):
        before = _viewer(page, zoom)
        page.keyboard.press(key)
        assert _viewer(page, zoom) != before, key
    for key, control in (("i", "[data-invert]"), ("h", "[data-overlay-toggle]")):
        before = _viewer(page, f"v.$('{control}').checked")
        page.keyboard.press(key)
        assert _viewer(page, f"v.$('{control}').checked") != before, key
    page.keyboard.press("r")
    assert _viewer(page, "[v.$('[data-invert]').checked, v.zoomState]") == [False, "fit"]

    page.keyboard.press("?")
    assert _viewer(page, "!v.$('[data-help]').hidden"), "? did not open the help"
    page.keyboard.press("Escape")
    assert _viewer(page, "v.$('[data-help]').hidden"), "Escape did not close the help"
    assert page.evaluate(FIRST_IMAGE), "the image lost the focus"

    # On through the whole page and back round to the first image: never a hidden element.
    second = False
    for _ in range(300):
        page.keyboard.press("Tab")
        assert page.evaluate(FOCUS_HIDDEN) is None, "the focus is on a hidden element"
        second |= page.evaluate("document.activeElement === window.chestnetViewers[1].element")
        if page.evaluate(FIRST_IMAGE):
            break
    else:
        raise AssertionError("Tab never came back round to the first image")
    assert second, "the second image is no Tab stop"
    # Starting a root that has its viewer again (another script's late images) is harmless.
    again = "async () => (await window.chestnetViewerStart(window.chestnetViewers[0].root))"
    assert page.evaluate(f"{again} === window.chestnetViewers[0]")
    assert page.evaluate("window.chestnetViewers.length") == 2
    assert errors == []


def test_the_review_page_is_one_column_at_800_px_and_a_reading_room_at_1400(login, live_server):
    factories.UserFactory(username="narrow-radiologist", role=roles.RADIOLOGIST)
    case = factories.awaiting_review_case()
    page = login(live_server.url, "narrow-radiologist")
    # Strip, images and report side by side (three columns), or stacked (none).
    columns = """(() => { const body = getComputedStyle(document.querySelector('.rr-body'));
      return body.display === 'grid' ? body.gridTemplateColumns : 'stacked'; })()"""
    for width, count in ((800, 1), (1400, 3)):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{live_server.url}/cases/{case.pk}/review/")
        assert len(page.evaluate(columns).split()) == count, width
        overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
        assert overflow <= 0, f"{overflow} px wider than the window at {width} px"
    page.set_viewport_size({"width": 800, "height": 900})
    page.goto(f"{live_server.url}/cases/{case.pk}/review/")
    page.screenshot(path=str(SHOTS / "18-review-800px.png"), full_page=False)
