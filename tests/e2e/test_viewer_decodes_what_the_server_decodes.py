"""The review page's viewer decodes what the server decodes (issue 19): one small radiograph
per transfer syntax the DICOM listener accepts, MONOCHROME1 and 2, 8 to 16 bits, signed,
rescaled, through a Modality LUT, without file meta (tests.support.transfer_syntaxes),
received and analysed by a real worker, then opened in a real Chromium. Each must be drawn
as the server's own preview of it shows it (Pearson r > 0.8), never as a flat canvas, a
"NaN" zoom or "0 × 0 px"; the 16-bit DX whose stored window misses its values opens with the
window from its pixel data and says so; the file the browser cannot decode shows the server's
rendering under a banner that says so.

The browser work is done once for all files, by the module's `shown` fixture (one worker,
one browser page, one sign-in); each test then checks one file's outcome."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from accounts import roles
from diagnosis import services
from diagnosis.models import Case, Image
from tests.e2e.conftest import ARGS, CHROMIUM
from tests.support import factories, transfer_syntaxes
from tests.support.factories import TEST_PASSWORD
from tests.support.stack import wait_for

# The database mark makes pytest-django create the test database; the cases themselves are
# made once, by the module's `shown` fixture, before any test of the module ends (each one
# empties the database when it does).
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

NAMES = list(transfer_syntaxes.RECIPES)
MIN_CORRELATION = 0.8
MIN_SPREAD = 40  # grey levels between the darkest and brightest drawn pixel
FALLBACK_NOTICE = "Your browser could not display this image; showing the server's rendering"
RADIOLOGIST = "e2e-decoding-radiologist"
FLAT_DRAWN = "explicit-le-mono2"
# Every texture upload does nothing: Cornerstone decodes the image and draws it black.
DROPPED_TEXTURES = """
for (const Context of [WebGLRenderingContext, WebGL2RenderingContext]) {
  for (const name of ["texImage2D", "texSubImage2D", "texImage3D", "texSubImage3D"]) {
    if (Context.prototype[name]) Context.prototype[name] = function () {};
  }
}
"""

# What the page shows of its one viewer, and what it drew of the image, resampled to the
# server's preview size (the image's own rectangle of the canvas, from where the viewer
# says its corners are).
OBSERVE = """async ([width, height]) => {
  const root = document.querySelector(".cn-viewer");
  const q = (selector) => root.querySelector(selector);
  const banner = q("[data-viewer-error]");
  const fallback = q("[data-fallback]");
  const seen = {
    state: root.classList.contains("cn-failed") ? "failed"
      : root.classList.contains("cn-ready") ? "ready" : "loading",
    banner: banner.hidden ? null : banner.textContent,
    info: q("[data-image-info]").textContent,
    zoom: q("[data-zoom-readout]").textContent,
    window: [q("[data-wl-center]").textContent, q("[data-wl-width]").textContent],
    windowSource: root.dataset.windowSource ?? null,
    windowLabel: q("[data-preset=file]").textContent,
    fallback: fallback.hidden ? null : {
      src: fallback.getAttribute("src"), loaded: fallback.complete && fallback.naturalWidth > 0,
      shown: fallback.offsetWidth > 0 && fallback.offsetHeight > 0,
    },
  };
  const v = window.chestnetViewers[0];
  if (seen.state !== "ready") return seen;
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  seen.voi = v.viewport.getProperties().voiRange;
  const canvas = v.element.querySelector("canvas.cornerstone-canvas");
  const box = v.element.getBoundingClientRect();
  const ratio = canvas.width / box.width;
  const [columns, rows] = v.viewport.getImageData().dimensions;
  const [o, r, d] = [[0, 0], [columns, 0], [0, rows]].map(([x, y]) => v.imageToPage(x, y))
    .map(([x, y]) => [(x - box.left) * ratio, (y - box.top) * ratio]);
  const out = new OffscreenCanvas(width, height);
  const context = out.getContext("2d", { willReadFrequently: true });
  context.drawImage(canvas, o[0], o[1], r[0] - o[0], d[1] - o[1], 0, 0, width, height);
  const rgba = context.getImageData(0, 0, width, height).data;
  seen.drawn = Array.from({ length: width * height }, (_, i) => rgba[i * 4]);
  return seen;
}"""


@dataclass
class Shown:
    """One file as the viewer showed it, with the server's preview of it."""

    sample: transfer_syntaxes.Sample
    preview: np.ndarray  # the worker's 8-bit preview, as served
    seen: dict[str, Any]
    page_errors: list[str] = field(default_factory=list)  # exceptions and console errors

    @property
    def drawn(self) -> np.ndarray:
        return np.asarray(self.seen["drawn"], dtype=float).reshape(self.preview.shape)


@dataclass
class Viewed:
    """Every file as shown, the requests of those pages that left the app's origin, and one
    file shown by a browser whose GPU drops textures."""

    files: dict[str, Shown]
    offsite: list[str]
    flat: Shown


@pytest.fixture(scope="module")
def samples() -> dict[str, transfer_syntaxes.Sample | None]:
    """Every file, built now; None where its encoder (dcmtk) is not installed."""
    picture = transfer_syntaxes.chest_picture()
    return {
        name: None
        if transfer_syntaxes.needs_dcmtk(name) and transfer_syntaxes.DCMCJPEG is None
        else transfer_syntaxes.sample(name, picture)
        for name in NAMES
    }


@pytest.fixture(scope="module")
def module_browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        # Playwright's loop runs in this thread; the ORM calls around it stay synchronous.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            yield browser
            browser.close()


@pytest.fixture(scope="module")
def shown(
    samples: dict[str, transfer_syntaxes.Sample | None],
    module_browser: Any,
    django_db_blocker: Any,
    live_server: Any,
    worker: Any,
    shared_media: Path,
) -> Iterator[Viewed]:
    """Every file received (the legacy one uploaded: the listener's files always have file
    meta) and analysed by the worker, then opened on its review page, once for the module,
    in the worker's media folder."""
    from django.db import connections
    from django.test import override_settings

    with override_settings(MEDIA_ROOT=str(shared_media)), django_db_blocker.unblock():
        factories.UserFactory(username=RADIOLOGIST, role=roles.RADIOLOGIST)
        cases = {name: _received(s) for name, s in samples.items() if s is not None}
        images = {name: Image.objects.get(case=case) for name, case in cases.items()}
        wait_for(lambda: all(_analysed(image.pk) for image in images.values()), timeout=240)
        try:
            yield _open_all(module_browser, live_server.url, samples, cases)
        finally:
            Case.objects.filter(pk__in=[case.pk for case in cases.values()]).delete()
            connections.close_all()


def _received(sample: transfer_syntaxes.Sample) -> Case:
    if sample.syntax:  # Part 10, as a modality sends it
        received = services.instance_receive(data=sample.data, source="dimse", source_ae="CR1")
        return Case.objects.get(pk=received.case_id)
    clinician = factories.UserFactory(username="e2e-decoding-clinician", role=roles.CLINICIAN)
    validated = services.image_validate(name=f"{sample.name}.dcm", data=sample.data)
    return services.case_create(owner=clinician, images=[validated], patient_id="E2E-19", age=4)


def _analysed(image_id: int) -> bool:
    image = Image.objects.get(pk=image_id)
    return bool(image.preview) or image.status in ("done", "refused", "failed")


def _open_all(browser, base: str, samples, cases: dict[str, Case]) -> Viewed:
    page, offsite = _signed_in(browser, base)
    files = {name: _view(page, base, case, samples[name]) for name, case in cases.items()}
    page.context.close()
    # A GPU that drops every texture: the file decodes, and what is drawn is one flat black.
    page, _ = _signed_in(browser, base, init_script=DROPPED_TEXTURES)
    flat = _view(page, base, cases[FLAT_DRAWN], samples[FLAT_DRAWN])
    page.context.close()
    return Viewed(files, offsite, flat)


def _signed_in(browser, base: str, init_script: str = "") -> tuple[Any, list[str]]:
    """A page signed in as the radiologist, in a context of its own, and the list its
    requests off the app's origin go to."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    if init_script:
        context.add_init_script(init_script)
    offsite: list[str] = []
    local = (base, f"blob:{base}", "data:")
    context.on("request", lambda r: None if r.url.startswith(local) else offsite.append(r.url))
    page = context.new_page()
    page.errors = []  # uncaught exceptions and console errors: none on any file
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda m: m.type == "error" and page.errors.append(f"console: {m.text}"))
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", RADIOLOGIST)
    page.fill("input[name=password]", TEST_PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    return page, offsite


def _view(page, base: str, case: Case, sample: transfer_syntaxes.Sample) -> Shown:
    page.errors.clear()
    image = Image.objects.get(case=case)
    preview = _preview(page, f"{base}/images/{image.pk}/preview/")
    page.goto(f"{base}/cases/{case.pk}/review/")
    page.wait_for_selector(".cn-viewer.cn-ready, .cn-viewer.cn-failed", timeout=30_000)
    if page.locator("[data-fallback]:not([hidden])").count():
        page.wait_for_function("() => document.querySelector('[data-fallback]').complete")
    seen = page.evaluate(OBSERVE, [preview.shape[1], preview.shape[0]])
    return Shown(sample, preview, seen, list(page.errors))


def _preview(page, url: str) -> np.ndarray:
    response = page.request.get(url)
    assert response.ok, f"no server preview at {url}: HTTP {response.status}"
    with PILImage.open(io.BytesIO(response.body())) as picture:
        return np.asarray(picture.convert("L"), dtype=float)


def _shows_the_servers_rendering(seen: dict[str, Any]) -> None:
    assert seen["state"] == "failed"
    assert seen["banner"] and seen["banner"].startswith(FALLBACK_NOTICE)
    fallback = seen["fallback"]
    assert fallback and fallback["shown"] and fallback["loaded"]
    assert fallback["src"].endswith("/preview/")
    assert "0 × 0" not in seen["info"] and "NaN" not in seen["zoom"]
    assert seen["zoom"] == "–" and tuple(seen["window"]) == ("–", "–")


def _of(shown: Viewed, name: str) -> Shown:
    if name not in shown.files:
        pytest.skip(f"{name}: dcmtk's dcmcjpeg is not installed (make dicom-tools)")
    return shown.files[name]


def _file_window(sample: transfer_syntaxes.Sample) -> tuple[str, str]:
    ds = pydicom.dcmread(io.BytesIO(sample.data), stop_before_pixels=True, force=True)
    return str(round(float(ds.WindowCenter))), str(round(float(ds.WindowWidth)))


DECODABLE = [name for name in NAMES if transfer_syntaxes.RECIPES[name].browser_decodable]


@pytest.mark.parametrize("name", DECODABLE)
def test_the_viewer_draws_the_file_as_the_server_reads_it(shown, name):
    result = _of(shown, name)
    seen = result.seen
    assert seen["state"] == "ready", seen["banner"]
    assert seen["banner"] is None and seen["fallback"] is None
    drawn = result.drawn
    assert drawn.max() - drawn.min() >= MIN_SPREAD, "the image was drawn (nearly) flat"
    r = np.corrcoef(drawn.ravel(), result.preview.ravel())[0, 1]
    assert r > MIN_CORRELATION, f"drawn image and server preview correlate at r = {r:.3f}"
    rows, columns = result.preview.shape  # the preview keeps the size of these small images
    assert seen["info"].startswith(f"{columns} × {rows} px")
    assert seen["zoom"].endswith(" %") and "NaN" not in seen["zoom"]
    assert result.page_errors == []
    if not result.sample.derived_window:
        assert (seen["windowSource"], seen["windowLabel"]) == ("file", "File window")
        assert tuple(seen["window"]) == _file_window(result.sample)


def test_a_16_bit_dx_whose_stored_window_misses_its_values_opens_with_the_pixels_window(shown):
    """Its stored window (W 400 / L 2000) lies below every value: drawn with it, the image
    was solid white. The viewer opens with the window the model's preprocessing uses (the
    0.5th to 99.5th percentile of the values, ml/preprocessing.py) and its toolbar says so."""
    result = _of(shown, "explicit-le-16bit-window-misfit")
    seen = result.seen
    assert (seen["windowSource"], seen["windowLabel"]) == ("pixels", "Window from pixel data")
    assert result.page_errors == []
    values = pydicom.dcmread(io.BytesIO(result.sample.data)).pixel_array.astype(float)
    low, high = np.percentile(values, [0.5, 99.5])  # 272 x 320: the server samples every pixel
    assert seen["voi"]["lower"] == pytest.approx(low, abs=0.5)
    assert seen["voi"]["upper"] == pytest.approx(high, abs=0.5)
    centre, width = transfer_syntaxes.MISFIT_WINDOW
    assert tuple(seen["window"]) != (str(centre), str(width))
    assert result.drawn.mean() < 200, "drawn (nearly) white"


def test_a_file_the_browser_cannot_decode_shows_the_servers_rendering_with_a_banner(shown):
    """Its JPEG-LS stream is cut short: the server's decoder reads what is there, the
    browser's refuses it."""
    result = _of(shown, "jpeg-ls-cut-short")
    _shows_the_servers_rendering(result.seen)
    assert "JPEG-LS" in result.seen["banner"]  # and says why
    assert result.page_errors == []  # the banner says it; the console has no error


def test_a_flat_drawing_shows_the_servers_rendering_with_a_banner(shown):
    """Decoded, but drawn as one flat grey (here a GPU that drops textures): never a silent
    black canvas."""
    seen = shown.flat.seen
    _shows_the_servers_rendering(seen)
    assert "flat grey" in seen["banner"]
    assert shown.flat.page_errors == []


def test_nothing_is_fetched_from_elsewhere(shown):
    """The codecs' WebAssembly and the decoding worker come from the app's own origin."""
    assert shown.offsite == []
