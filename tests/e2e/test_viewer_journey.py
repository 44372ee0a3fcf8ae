"""The review page's diagnostic viewer (Cornerstone3D, static/viewer/) in a real Chromium
(Playwright), on originals analysed by a real worker: window/level with its values on screen
and presets, 1:1 on a large 12-bit DICOM, a length in mm from Pixel Spacing, the DICOM header,
the Grad-CAM overlay aligned at every zoom, PNG/JPEG originals at full size, JPEG 2000 decoded
by the bundled codec, and no request leaving the app in any journey. Screenshots land in
docs/screenshots/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from accounts import roles
from devtools import dicom_files
from diagnosis import services
from diagnosis.models import Case
from tests.support import factories
from tests.support.factories import TEST_PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
COLUMNS, ROWS = 2000, 1600  # larger than the view at 1:1, as detectors are
SPACING_MM = 0.2
FILE_WINDOW = (1800, 3000)  # (centre, width) in the header


@pytest.fixture(scope="module")
def worker_env(worker_env: dict[str, str]) -> dict[str, str]:
    """The shipped model, not the tiny one: the screenshots show a real Grad-CAM map."""
    from ml.artifact import DEFAULT_ARTIFACT

    return {**worker_env, "CHESTNET_MODEL_PATH": str(DEFAULT_ARTIFACT)}


def _pneumonia_jpeg(radiograph_set: Path) -> Path:
    """A full-size original of the data set (the training copies are downsized)."""
    for path in sorted((radiograph_set / "originals" / "PNEUMONIA").glob("*.jpeg")):
        with PILImage.open(path) as opened:
            if opened.width >= 1200:
                return path
    raise AssertionError("no full-size pneumonia radiograph in the radiograph set")


# Two 64 x 64 one-pixel checkerboards on the radiograph (top-left corner, low and high
# values): they survive only if every pixel and every bit reaches the screen. A preview,
# any resampling or 8 bits would turn each into a flat grey.
COARSE = (700, 900, (1000, 3000))  # row, column, values: 1 pixel detail
FINE = (700, 1040, (2000, 2001))  # 1 pixel and 1 of 4096 levels: 12-bit detail


def _large_dicom(radiograph_set: Path, *, syntax: str = "explicit") -> bytes:
    """A real radiograph as a 2000 x 1600 (columns x rows), 12-bit DX with Pixel Spacing
    0.2 mm and a window: the source's 8 bits times 16 plus noise in the low 4 bits, so all
    12 bits vary; and the checkerboards above."""
    with PILImage.open(_pneumonia_jpeg(radiograph_set)) as opened:
        gray = opened.convert("L").resize((COLUMNS, ROWS), PILImage.Resampling.BICUBIC)
    noise = np.random.default_rng(7).integers(0, 16, size=(ROWS, COLUMNS))
    pixels = (np.asarray(gray, dtype=np.uint16) * 16 + noise).astype(np.uint16)
    checker = np.indices((64, 64)).sum(axis=0) % 2
    for row, column, (low, high) in (COARSE, FINE):
        pixels[row : row + 64, column : column + 64] = np.where(checker, high, low)
    ds = dicom_files.radiograph(pixels=pixels, syntax=syntax)
    ds.PixelSpacing = [SPACING_MM, SPACING_MM]
    ds.WindowCenter, ds.WindowWidth = FILE_WINDOW
    return dicom_files.to_bytes(ds)


def _received(data: bytes) -> Case:
    received = services.instance_receive(data=data, source="dimse", source_ae="MODALITY")
    return Case.objects.get(pk=received.case_id)


def _uploaded(path: Path) -> Case:
    clinician = factories.UserFactory(username="e2e-clinician", role=roles.CLINICIAN)
    validated = services.image_validate(name=path.name, data=path.read_bytes())
    return services.case_create(owner=clinician, images=[validated], patient_id="E2E-7", age=4)


def _analysed(case: Case, wait) -> Case:
    wait(lambda: Case.objects.get(pk=case.pk).status == Case.Status.AWAITING_REVIEW)
    return case


def _watch_requests(page, base: str) -> tuple[list[str], list[str]]:
    """Every request of the page and its workers: (all URLs, those not to the app). A
    blob: URL of the app's origin is memory the page made, not a download."""
    seen: list[str] = []
    offsite: list[str] = []

    def note(request) -> None:
        seen.append(request.url)
        if not request.url.startswith((f"{base}/", f"blob:{base}/")):
            offsite.append(request.url)

    page.context.on("request", note)
    return seen, offsite


def _open_viewer(page, base: str, case: Case):
    page.goto(f"{base}/cases/{case.pk}/review/")
    page.wait_for_selector(".cn-viewer.cn-ready", timeout=60_000)
    viewer = page.locator(".cn-viewer").first
    viewer.locator("[data-viewport]").scroll_into_view_if_needed()
    return viewer


def _drag(page, viewer, start_xy: str, end_xy: str, button: str = "left") -> None:
    """Drag between two points of the image, given in image pixels ("x, y"), once the page
    has stopped moving (a late layout change would move the image under the mouse)."""
    _steady(page, viewer)
    start = page.evaluate(f"() => window.chestnetViewers[0].imageToPage({start_xy})")
    end = page.evaluate(f"() => window.chestnetViewers[0].imageToPage({end_xy})")
    page.mouse.move(*start)
    page.mouse.down(button=button)
    page.mouse.move(*end, steps=8)
    page.mouse.up(button=button)


def _steady(page, viewer) -> None:
    box = None
    for _ in range(50):
        page.wait_for_timeout(100)
        now = viewer.locator("[data-viewport]").bounding_box()
        if now == box:
            return
        box = now
    raise AssertionError("the viewer kept moving")


def _measured(page, viewer) -> tuple[float, str]:
    """The last length and its unit once it stops changing (the readout follows the drag
    and Cornerstone works out the final length on the render after the mouse is released)."""
    node = viewer.locator("[data-measurement]")
    last = None
    for _ in range(50):
        page.wait_for_timeout(150)
        now = (node.get_attribute("data-value"), node.get_attribute("data-unit"))
        if now[0] is not None and now == last:
            return float(now[0]), now[1]
        last = now
    raise AssertionError(f"no steady measurement: {last}")


def _window(viewer) -> tuple[float, float]:
    """(centre, width) as the numbers on screen say."""
    centre = viewer.locator("[data-wl-center]").inner_text()
    width = viewer.locator("[data-wl-width]").inner_text()
    return float(centre), float(width)


def _sign_in(browser, base: str, username: str, **context):
    """A signed-in page; `page.errors` collects the page's uncaught errors and console errors."""
    page = browser.new_page(viewport={"width": 1400, "height": 950}, **context)
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(f"{error}"))
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", TEST_PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    return page


# The rendered canvas's grey levels (device pixels) at the centres of the image pixels of a
# 16 x 16 block whose top-left pixel is (column, row), against the grey the current window
# gives each pixel's stored value (linear VOI, as Cornerstone's LUT).
RENDERED_BLOCK = """async ([column, row]) => {
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  const v = window.chestnetViewers[0];
  const canvas = v.element.querySelector("canvas.cornerstone-canvas");
  const copy = new OffscreenCanvas(canvas.width, canvas.height);
  const context = copy.getContext("2d", { willReadFrequently: true });
  context.drawImage(canvas, 0, 0);
  const box = v.element.getBoundingClientRect();
  const ratio = window.devicePixelRatio;
  const { lower, upper } = v.viewport.getProperties().voiRange;
  const values = v.image.getPixelData();
  const rendered = [], expected = [];
  for (let y = row; y < row + 16; y++) for (let x = column; x < column + 16; x++) {
    const [px, py] = v.imageToPage(x + 0.5, y + 0.5);
    const dx = Math.floor((px - box.left) * ratio), dy = Math.floor((py - box.top) * ratio);
    rendered.push(context.getImageData(dx, dy, 1, 1).data[0]);
    const value = values[y * v.image.columns + x];
    expected.push(Math.round(Math.min(1, Math.max(0, (value - lower) / (upper - lower))) * 255));
  }
  return { rendered, expected };
}"""


def _block_matches(page, column: int, row: int) -> list[int]:
    """The rendered grey levels of the block, after checking them against the window."""
    block = page.evaluate(RENDERED_BLOCK, [column, row])
    differences = [abs(a - b) for a, b in zip(block["rendered"], block["expected"], strict=True)]
    assert max(differences) <= 3, block
    return block["rendered"]


# What the tests read from Cornerstone, through window.chestnetViewers (static/viewer/).
GEOMETRY = """() => {
  const v = window.chestnetViewers[0];
  const canvas = v.element.querySelector("canvas.cornerstone-canvas");
  const data = v.viewport.getImageData();
  const [sx, sy] = v.devicePixelsPerImagePixel();
  let max = 0;
  for (const value of v.image.getPixelData()) if (value > max) max = value;
  return {
    sx, sy, dpr: window.devicePixelRatio, dimensions: Array.from(data.dimensions).slice(0, 2),
    canvas: [canvas.width, canvas.height], css: [canvas.clientWidth, canvas.clientHeight],
    maxValue: max,
  };
}"""


def test_window_level_presets_one_to_one_measurement_and_header_on_a_large_dicom(
    browser, live_server, worker, radiograph_set, wait
):
    factories.UserFactory(username="e2e-radiologist", role=roles.RADIOLOGIST)
    SHOTS.mkdir(parents=True, exist_ok=True)
    case = _analysed(_received(_large_dicom(radiograph_set)), wait)

    page = _sign_in(browser, live_server.url, "e2e-radiologist")
    seen, offsite = _watch_requests(page, live_server.url)
    viewer = _open_viewer(page, live_server.url, case)
    assert viewer.locator("[data-image-info]").inner_text() == "2000 × 1600 px · 12-bit · DX"

    # The file's own window, then a left-drag (window/level mode) changes both numbers live.
    assert _window(viewer) == FILE_WINDOW
    _steady(page, viewer)
    box = viewer.locator("[data-viewport]").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 120, y - 60, steps=6)
    dragging = _window(viewer)
    page.mouse.up()
    assert dragging[0] != FILE_WINDOW[0] and dragging[1] > FILE_WINDOW[1]
    assert _window(viewer) == dragging

    # Presets by key: each a different window; 2 is the file's own again.
    page.focus("[data-viewport]")
    windows = {}
    for key in "345":
        page.keyboard.press(key)
        windows[key] = _window(viewer)
        assert (
            viewer.locator(f"[data-preset][aria-keyshortcuts='{key}']").get_attribute(
                "aria-pressed"
            )
            == "true"
        )
    assert len(set(windows.values())) == 3 and FILE_WINDOW not in windows.values()
    # Modes, invert and help by key too.
    for key, mode in (("p", "pan"), ("z", "zoom"), ("m", "measure"), ("w", "wl")):
        page.keyboard.press(key)
        assert viewer.locator("[data-mode][aria-pressed=true]").get_attribute("data-mode") == mode
    page.keyboard.press("i")
    assert viewer.locator("[data-invert]").is_checked()
    assert page.evaluate("() => window.chestnetViewers[0].viewport.getProperties().invert")
    page.keyboard.press("i")
    assert not page.evaluate("() => window.chestnetViewers[0].viewport.getProperties().invert")
    page.keyboard.press("?")
    assert viewer.locator("[data-help]").is_visible()
    page.keyboard.press("Escape")
    assert viewer.locator("[data-help]").is_hidden()

    page.keyboard.press("3")
    page.screenshot(path=str(SHOTS / "11-viewer-window-level-lung-preset.png"))
    page.keyboard.press("2")
    assert _window(viewer) == FILE_WINDOW

    # The header on demand: the radiologist sees the patient's ID.
    page.keyboard.press("d")
    header = viewer.locator("[data-header-panel]")
    header.locator("tr[data-keyword='Modality']").wait_for()
    assert header.locator("tr[data-keyword='Modality'] td").last.inner_text() == "DX"
    assert header.locator("tr[data-keyword='PatientID'] td").last.inner_text() == "PAT-0042"
    assert header.locator("tr[data-keyword='PixelData']").count() == 0
    header.locator("[data-header-filter]").fill("patient")
    page.screenshot(path=str(SHOTS / "12-viewer-dicom-header.png"), full_page=True)
    page.keyboard.press("Escape")
    assert header.is_hidden()

    # A length in mm: at 1:1, drag 200 image pixels (40 mm at 0.2 mm per pixel).
    page.focus("[data-viewport]")
    page.keyboard.press("1")
    page.keyboard.press("m")
    assert "pixel spacing 0.2 × 0.2 mm" in viewer.locator("[data-measure-unit]").inner_text()
    _drag(page, viewer, "900, 800", "1100, 800")
    length, unit = _measured(page, viewer)
    assert length == pytest.approx(40.0, abs=0.01) and unit.startswith("mm")
    assert viewer.locator("[data-measurement]").inner_text() == "Last length: 40.00 mm"
    page.screenshot(path=str(SHOTS / "13-viewer-length-in-mm.png"))
    assert offsite == [], offsite
    assert page.errors == [], page.errors
    assert any("/header/" in url for url in seen)


def test_one_to_one_shows_every_pixel_of_a_large_dicom_at_device_resolution(
    browser, live_server, worker, radiograph_set, wait
):
    """On a 2x (HiDPI) screen: 1:1 is one image pixel per device pixel, not per CSS pixel,
    and the canvas behind the view holds device pixels."""
    factories.UserFactory(username="e2e-radiologist", role=roles.RADIOLOGIST)
    case = _analysed(_received(_large_dicom(radiograph_set)), wait)
    page = _sign_in(browser, live_server.url, "e2e-radiologist", device_scale_factor=2)
    _, offsite = _watch_requests(page, live_server.url)
    viewer = _open_viewer(page, live_server.url, case)

    fit = page.evaluate(GEOMETRY)
    assert fit["dimensions"] == [COLUMNS, ROWS] and fit["maxValue"] > 255  # all 12 bits
    assert fit["sx"] < 1  # fitted: the whole image in a smaller view

    viewer.locator("[data-action=one-to-one]").click()
    one = page.evaluate(GEOMETRY)
    assert one["dpr"] == 2
    assert one["canvas"] == [one["css"][0] * 2, one["css"][1] * 2]
    assert one["sx"] == pytest.approx(1.0, abs=1e-9) and one["sy"] == pytest.approx(1.0, abs=1e-9)
    assert viewer.locator("[data-zoom-readout]").inner_text() == "100 % (1:1)"
    # Every image pixel its own device pixel: the coarse checkerboard alternates dark and
    # light pixel by pixel, as the file's window says.
    row, column, _ = COARSE
    greys = _block_matches(page, column, row)
    assert len({greys[0], greys[1]}) == 2 and greys[0::2][:8] == [greys[0]] * 8
    page.screenshot(path=str(SHOTS / "14-viewer-one-to-one.png"))
    # Every bit too: values 2000 and 2001 are black and white in a window of two levels.
    page.evaluate(
        "() => { const v = window.chestnetViewers[0].viewport;"
        " v.setProperties({ voiRange: { lower: 2000, upper: 2001 } }); v.render(); }"
    )
    row, column, _ = FINE
    assert set(_block_matches(page, column, row)) == {0, 255}

    page.focus("[data-viewport]")
    page.keyboard.press("f")
    assert page.evaluate(GEOMETRY)["sx"] == pytest.approx(fit["sx"])
    assert offsite == [], offsite
    assert page.errors == [], page.errors


# The heatmap layer against the heatmap PNG, on a grid of points of the view that show the
# image: where the image's pixel (x, y) is drawn, the layer must have the colour of the PNG's
# pixel at the same place of the image. Returns the points that differ, and how many were
# compared. Image coordinates come from where the viewer says the image's corners are.
HEATMAP_CHECK = """async () => {
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  const v = window.chestnetViewers[0];
  const picture = new Image();
  picture.src = v.data.heatmapUrl;
  await picture.decode();
  const W = picture.naturalWidth, H = picture.naturalHeight;
  const source = new OffscreenCanvas(W, H);
  const sctx = source.getContext("2d", { willReadFrequently: true });
  sctx.drawImage(picture, 0, 0);
  const png = sctx.getImageData(0, 0, W, H).data;
  const [columns, rows] = v.viewport.getImageData().dimensions;
  const [o, r, d] = [[0, 0], [columns, 0], [0, rows]].map(([x, y]) => v.imageToPage(x, y));
  const a = (r[0] - o[0]) / columns, b = (d[0] - o[0]) / rows;
  const c = (r[1] - o[1]) / columns, e = (d[1] - o[1]) / rows;
  const det = a * e - b * c;
  const box = v.element.getBoundingClientRect();
  const ratio = window.devicePixelRatio;
  const layer = v.element.querySelector("[data-heatmap-canvas]")
    .getContext("2d", { willReadFrequently: true });
  const differing = [];
  let compared = 0;
  for (let gy = 1; gy < 16; gy++) for (let gx = 1; gx < 16; gx++) {
    const px = box.left + gx * box.width / 16, py = box.top + gy * box.height / 16;
    const x = (e * (px - o[0]) - b * (py - o[1])) / det;
    const y = (a * (py - o[1]) - c * (px - o[0])) / det;
    if (x < 1 || y < 1 || x > columns - 1 || y > rows - 1) continue;
    const u = Math.floor(x * W / columns), w = Math.floor(y * H / rows);
    const i = (w * W + u) * 4;
    const expected = png.slice(i, i + 4);
    const drawn = layer.getImageData(
      Math.floor((px - box.left) * ratio), Math.floor((py - box.top) * ratio), 1, 1).data;
    compared++;
    const off = expected[3] < 8 ? drawn[3] > 40
      : [0, 1, 2, 3].some((k) => Math.abs(expected[k] - drawn[k]) > 40);
    if (off) differing.push({ x, y, expected: Array.from(expected), drawn: Array.from(drawn) });
  }
  return { differing, compared };
}"""


def _heatmap_matches(page) -> None:
    result = page.evaluate(HEATMAP_CHECK)
    assert result["compared"] >= 100, result
    assert result["differing"] == [], result


def test_the_heatmap_stays_on_the_image_at_every_zoom_and_pan(
    browser, live_server, worker, radiograph_set, wait
):
    factories.UserFactory(username="e2e-radiologist", role=roles.RADIOLOGIST)
    case = _analysed(_received(_large_dicom(radiograph_set)), wait)
    page = _sign_in(browser, live_server.url, "e2e-radiologist")
    _, offsite = _watch_requests(page, live_server.url)
    viewer = _open_viewer(page, live_server.url, case)
    page.wait_for_function("() => window.chestnetViewers[0].heatmap?.picture")
    viewer.locator("[data-overlay-opacity]").fill("100")

    _heatmap_matches(page)  # fitted
    page.focus("[data-viewport]")
    page.keyboard.press("1")
    _heatmap_matches(page)  # 1:1
    for key in ("ArrowLeft", "ArrowLeft", "ArrowUp", "+", "+"):
        page.keyboard.press(key)
    _heatmap_matches(page)  # panned and zoomed by keyboard
    _drag(page, viewer, "900, 700", "750, 790", button="middle")
    _heatmap_matches(page)  # panned by middle-drag
    viewer.locator("[data-overlay-opacity]").fill("60")
    page.screenshot(path=str(SHOTS / "15-viewer-heatmap-zoomed.png"))

    page.keyboard.press("h")  # off, then Reset brings it back at the default opacity
    assert not viewer.locator("[data-overlay-toggle]").is_checked()
    page.keyboard.press("r")
    assert viewer.locator("[data-overlay-toggle]").is_checked()
    assert viewer.locator("[data-overlay-opacity]").input_value() == "50"
    assert _window(viewer) == FILE_WINDOW
    assert offsite == [], offsite
    assert page.errors == [], page.errors


def test_a_jpeg_original_is_shown_at_full_size_and_measured_in_pixels(
    browser, live_server, worker, radiograph_set, wait
):
    factories.UserFactory(username="e2e-radiologist", role=roles.RADIOLOGIST)
    source = _pneumonia_jpeg(radiograph_set)
    with PILImage.open(source) as opened:
        width, height = opened.size
    case = _analysed(_uploaded(source), wait)
    page = _sign_in(browser, live_server.url, "e2e-radiologist")
    _, offsite = _watch_requests(page, live_server.url)
    viewer = _open_viewer(page, live_server.url, case)

    assert viewer.locator("[data-image-info]").inner_text() == f"{width} × {height} px · 8-bit"
    assert viewer.locator("[data-action=header]").count() == 0  # no DICOM header to show
    unit = viewer.locator("[data-measure-unit]")
    assert unit.get_attribute("data-unit") == "px" and "not mm" in unit.inner_text()
    page.focus("[data-viewport]")
    page.keyboard.press("1")
    page.keyboard.press("m")
    x, y = width // 2, height // 2
    _drag(page, viewer, f"{x}, {y - 75}", f"{x}, {y + 75}")
    assert _measured(page, viewer) == (pytest.approx(150.0, abs=0.01), "px")
    assert viewer.locator("[data-measurement]").inner_text() == "Last length: 150.00 px"
    page.keyboard.press("f")
    page.screenshot(path=str(SHOTS / "16-viewer-jpeg-original.png"))
    assert offsite == [], offsite
    assert page.errors == [], page.errors


def test_a_jpeg_2000_dicom_is_decoded_by_the_bundled_codec_from_the_apps_own_origin(
    browser, live_server, worker, radiograph_set, wait
):
    factories.UserFactory(username="e2e-radiologist", role=roles.RADIOLOGIST)
    case = _analysed(_received(_large_dicom(radiograph_set, syntax="j2k")), wait)
    page = _sign_in(browser, live_server.url, "e2e-radiologist")
    seen, offsite = _watch_requests(page, live_server.url)
    viewer = _open_viewer(page, live_server.url, case)

    assert viewer.locator("[data-image-info]").inner_text() == "2000 × 1600 px · 12-bit · DX"
    assert page.evaluate(GEOMETRY)["maxValue"] > 255
    codecs = [url for url in seen if url.endswith(".wasm")]
    assert codecs and all(url.startswith(f"{live_server.url}/static/viewer/") for url in codecs)
    assert offsite == [], offsite
    assert page.errors == [], page.errors
