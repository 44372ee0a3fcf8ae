// The review page's viewer: one Cornerstone3D stack viewport per image, showing the original
// file (DICOM through dicomLoader.js, PNG/JPEG through rasterLoader.js) at full size and
// bit depth, with window/level, presets, invert, zoom (1:1, fit), pan, length measurement,
// the Grad-CAM overlay, the DICOM header and keyboard shortcuts. The markup, with its labels,
// is templates/diagnosis/_image_viewer.html. Where the browser cannot decode the original, or
// what it drew is one flat grey, the server's rendering (the worker's preview) is shown
// instead, with a banner saying so: never a silent black or white canvas.
import {
  Enums,
  RenderingEngine,
  cache,
  eventTarget,
  imageLoader,
  metaData,
  utilities,
} from "@cornerstonejs/core";
import {
  Enums as ToolEnums,
  LengthTool,
  PanTool,
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
  annotation,
} from "@cornerstonejs/tools";

import { dicomImageId } from "./dicomLoader.js";
import { HeaderPanel } from "./headerPanel.js";
import { HeatmapLayer, imageCorners } from "./heatmap.js";
import { PRESETS, presetRanges } from "./presets.js";
import { rasterImageId } from "./rasterLoader.js";

const { Events, ViewportType } = Enums;
const { MouseBindings } = ToolEnums;
const { toWindowLevel, toLowHighRange } = utilities.windowLevel;
const MODES = {
  wl: WindowLevelTool.toolName,
  pan: PanTool.toolName,
  zoom: ZoomTool.toolName,
  measure: LengthTool.toolName,
};
const PAN_STEP = 0.1; // arrow keys pan by a tenth of the view
const WL_STEP = 0.02; // shift+arrows change width/level by 2 % of the image's range
// What was drawn counts as one flat grey when all of it lies within this many grey levels.
const UNIFORM_LEVELS = 2;
const FALLBACK_NOTICE = "Your browser could not display this image; showing the server's rendering.";
const NO_FALLBACK_NOTICE =
  "Your browser could not display this image, and there is no server rendering of it either " +
  "(the server could not read the file).";
const WINDOW_LABELS = { file: "File window", pixels: "Window from pixel data" };

let engine = null;
const renderingEngine = () => (engine ||= new RenderingEngine("chestnet-viewer"));

// Window/level and zoom of two viewers kept together, relative to each image's own (see
// Viewer.viewState): `b` takes `a`'s now. Returns the function that unlinks them.
export function linkViewers(a, b) {
  let busy = false;
  const follow = (from, to) => () => {
    if (busy || !from.viewport || !to.viewport) return;
    busy = true;
    try {
      to.showState(from.viewState());
    } finally {
      busy = false;
    }
  };
  const bound = [];
  for (const [from, to] of [[a, b], [b, a]]) {
    const handler = follow(from, to);
    for (const name of [Events.VOI_MODIFIED, Events.CAMERA_MODIFIED]) {
      from.element.addEventListener(name, handler);
      bound.push([from.element, name, handler]);
    }
  }
  follow(a, b)();
  return () => {
    for (const [element, name, handler] of bound) element.removeEventListener(name, handler);
  };
}

export class Viewer {
  constructor(root) {
    this.root = root;
    this.data = root.dataset;
    this.stage = root.querySelector("[data-stage]");
    this.element = root.querySelector("[data-viewport]");
    this.id = `image-${this.data.imageId}`;
    this.mode = "wl";
    this.zoomState = "fit";
    this.preset = "file";
  }

  $(selector) {
    return this.root.querySelector(selector);
  }

  $$(selector) {
    return [...this.root.querySelectorAll(selector)];
  }

  async start() {
    const url = new URL(this.data.originalUrl, window.location.href).href;
    this.imageId =
      this.data.originalFormat === "dicom"
        ? dicomImageId(url)
        : rasterImageId(url, this.data.originalFormat);
    this.fitElement();
    // Loaded, then cached: Cornerstone's loadAndCacheImage leaves a failed load's rejection
    // unhandled in its cache (an uncaught error in the console, besides the banner).
    this.image = await imageLoader.loadImage(this.imageId).catch((error) => {
      throw loadError(error);
    });
    if (!cache.getImageLoadObject(this.imageId)) {
      await cache.putImageLoadObject(this.imageId, { promise: Promise.resolve(this.image) });
    }
    const rendering = renderingEngine();
    rendering.enableElement({
      viewportId: this.id,
      type: ViewportType.STACK,
      element: this.element,
      defaultOptions: { background: [0, 0, 0] },
    });
    this.viewport = rendering.getViewport(this.id);
    this.takeKeyboard();
    this.setUpTools(rendering.id);
    await this.viewport.setStack([this.imageId]);
    this.defaultInvert = Boolean(this.viewport.getProperties().invert);
    this.ranges = presetRanges(this.image, this.imageId);
    this.labelFileWindow(this.ranges.file);
    this.heatmap = this.setUpHeatmap();
    this.element.addEventListener(Events.IMAGE_RENDERED, () => this.rendered());
    this.element.addEventListener(Events.VOI_MODIFIED, () => this.showWindow());
    const drawn = nextRender(this.element);
    this.applyPreset("file");
    this.bindControls();
    this.describeImage();
    await drawn;
    if (this.drawnIsUniform()) {
      this.fail(new Error("what it drew is a single flat grey"));
      return;
    }
    this.resizing = new ResizeObserver(() => this.resized());
    this.resizing.observe(this.stage);
    this.root.classList.add("cn-ready");
    this.status("");
  }

  // Cornerstone makes the element it draws in unreachable by Tab (tabindex -1): the image is
  // where the arrow keys pan and Shift+arrows window, so Tab reaches it, named for a reader.
  // Its key listener there cancels every key's default action, so that Tab would never leave
  // the image, nor would the browser's Ctrl/Alt keys (access keys) work: those keys are
  // stopped on the way down (never cancelled) and do what they do elsewhere.
  takeKeyboard() {
    this.element.tabIndex = 0;
    const passes = (event) => event.key === "Tab" || event.ctrlKey || event.altKey || event.metaKey;
    const pass = (event) => {
      if (event.target === this.element && passes(event)) event.stopPropagation();
    };
    this.root.addEventListener("keydown", pass, { capture: true });
    if (!this.element.getAttribute("aria-label")) {
      this.element.setAttribute(
        "aria-label",
        `Image ${this.data.imageId}: arrow keys pan, Shift+arrows window/level, ? help`,
      );
    }
  }

  // The server's rendering instead of the original, with a banner that says so.
  fail(error) {
    this.root.classList.remove("cn-ready");
    this.root.classList.add("cn-failed");
    this.element.tabIndex = -1; // hidden now: Tab goes past it
    const fallback = this.$("[data-fallback]");
    const rendered = Boolean(fallback?.dataset.src);
    const message = this.$("[data-viewer-error]");
    message.textContent =
      `${rendered ? FALLBACK_NOTICE : NO_FALLBACK_NOTICE} ` +
      `(${reasonOf(error)}.) The original can still be downloaded.`;
    message.dataset.reason = reasonOf(error);
    message.hidden = false;
    if (rendered) {
      fallback.src = fallback.dataset.src;
      fallback.hidden = false;
    }
    for (const node of this.$$("[data-wl-width], [data-wl-center], [data-zoom-readout]")) {
      node.textContent = "–";
    }
    const info = this.$("[data-image-info]");
    info.textContent = rendered ? "Server rendering (8-bit preview)" : "";
    const controls = "[data-mode], [data-preset], [data-invert], [data-overlay-tools] input";
    for (const control of this.$$(controls)) {
      control.disabled = true;
      if (control.hasAttribute("aria-pressed")) control.setAttribute("aria-pressed", "false");
    }
    for (const action of ["zoom-in", "zoom-out", "one-to-one", "fit", "reset", "clear"]) {
      const button = this.$(`[data-action=${action}]`);
      if (button) button.disabled = true;
    }
    this.status("");
  }

  // Whether the image, where the canvas shows it, is one grey within UNIFORM_LEVELS: a
  // texture the GPU refused, a window that misses every value.
  drawnIsUniform() {
    const canvas = this.element.querySelector("canvas.cornerstone-canvas");
    if (!canvas || !canvas.width || !canvas.height) return true;
    const copy = new OffscreenCanvas(canvas.width, canvas.height);
    const context = copy.getContext("2d", { willReadFrequently: true });
    context.drawImage(canvas, 0, 0);
    const box = this.element.getBoundingClientRect();
    const ratio = canvas.width / Math.max(1, box.width);
    const [origin, across, down] = imageCorners(this.viewport);
    const far = [across[0] + down[0] - origin[0], across[1] + down[1] - origin[1]];
    const xs = [origin, across, down, far].map(([x]) => x * ratio);
    const ys = [origin, across, down, far].map(([, y]) => y * ratio);
    const left = Math.max(0, Math.ceil(Math.min(...xs)));
    const top = Math.max(0, Math.ceil(Math.min(...ys)));
    const right = Math.min(canvas.width, Math.floor(Math.max(...xs)));
    const bottom = Math.min(canvas.height, Math.floor(Math.max(...ys)));
    if (!(right > left && bottom > top)) return true;
    const { data } = context.getImageData(left, top, right - left, bottom - top);
    let min = 255;
    let max = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i] < min) min = data[i];
      if (data[i] > max) max = data[i];
    }
    return max - min <= UNIFORM_LEVELS;
  }

  // The first preset says whether the viewer opened with the file's own window or one from
  // the pixel data, and why.
  labelFileWindow({ source, reason }) {
    this.root.dataset.windowSource = source;
    const button = this.$("[data-preset=file]");
    if (!button) return;
    button.textContent = WINDOW_LABELS[source];
    button.dataset.windowSource = source;
    const why = reason ? ` ${reason}` : "";
    button.title =
      source === "file"
        ? "The file's own window (2)"
        : "Window from the pixel data: their 0.5th to 99.5th percentile, as the AI reads " +
          `them.${why} (2)`;
  }

  status(text) {
    const node = this.$("[data-viewer-status]");
    if (node) {
      node.textContent = text;
      node.hidden = !text;
    }
  }

  // --- tools --------------------------------------------------------------------------

  setUpTools(renderingEngineId) {
    const group = ToolGroupManager.createToolGroup(`tools-${this.id}`);
    for (const name of [WindowLevelTool, PanTool, ZoomTool].map((tool) => tool.toolName)) {
      group.addTool(name);
    }
    group.addTool(LengthTool.toolName, { getTextLines: lengthText });
    // Cornerstone binds undo/redo of measurements to Z and Y; Z here is the zoom mode.
    group.getToolInstance(LengthTool.toolName).configuration.actions = {};
    group.addViewport(this.id, renderingEngineId);
    // Middle-drag pans and right-drag or the wheel zooms, whatever the left button does.
    group.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
    group.setToolActive(ZoomTool.toolName, {
      bindings: [{ mouseButton: MouseBindings.Secondary }, { mouseButton: MouseBindings.Wheel }],
    });
    group.setToolPassive(LengthTool.toolName);
    group.setToolActive(WindowLevelTool.toolName, {
      bindings: [{ mouseButton: MouseBindings.Primary }],
    });
    this.tools = group;
    this.element.addEventListener("contextmenu", (event) => event.preventDefault());
    const measured = (event) => this.measured(event.detail?.annotation);
    eventTarget.addEventListener(ToolEnums.Events.ANNOTATION_COMPLETED, measured);
    eventTarget.addEventListener(ToolEnums.Events.ANNOTATION_MODIFIED, measured);
  }

  setMode(mode) {
    if (mode !== this.mode) {
      this.tools.setToolPassive(MODES[this.mode]);
      this.tools.setToolActive(MODES[mode], { bindings: [{ mouseButton: MouseBindings.Primary }] });
      this.mode = mode;
    }
    for (const button of this.$$("[data-mode]")) {
      button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
    }
  }

  measured(item) {
    if (!item || item.metadata?.toolName !== LengthTool.toolName) return;
    if (item.metadata?.referencedImageId && item.metadata.referencedImageId !== this.imageId) return;
    const stats = Object.values(item.data?.cachedStats || {})[0];
    if (!stats || !Number.isFinite(stats.length)) return;
    const node = this.$("[data-measurement]");
    node.dataset.value = String(stats.length);
    node.dataset.unit = stats.unit;
    node.textContent = `Last length: ${stats.length.toFixed(2)} ${baseUnit(stats.unit)}`;
  }

  clearMeasurements() {
    for (const item of annotation.state.getAnnotations(LengthTool.toolName, this.element) || []) {
      annotation.state.removeAnnotation(item.annotationUID);
    }
    const node = this.$("[data-measurement]");
    node.textContent = "";
    delete node.dataset.value;
    this.viewport.render();
  }

  // --- window / level -----------------------------------------------------------------

  applyPreset(key) {
    const range = this.ranges[key];
    this.viewport.setProperties({ voiRange: { lower: range.lower, upper: range.upper } });
    this.viewport.render();
    this.preset = key;
    for (const button of this.$$("[data-preset]")) {
      button.setAttribute("aria-pressed", String(button.dataset.preset === key));
    }
    this.showWindow();
  }

  adjustWindow(widthStep, levelStep) {
    const { lower, upper } = this.viewport.getProperties().voiRange;
    const span = this.ranges.file.upper - this.ranges.file.lower || 1;
    const { windowWidth, windowCenter } = toWindowLevel(lower, upper);
    const width = Math.max(1, windowWidth + widthStep * span);
    this.viewport.setProperties({ voiRange: toLowHighRange(width, windowCenter + levelStep * span) });
    this.viewport.render();
  }

  showWindow() {
    const range = this.viewport.getProperties().voiRange;
    if (!range) return;
    const { windowWidth, windowCenter } = toWindowLevel(range.lower, range.upper);
    const format = (value) => (Math.abs(windowWidth) >= 10 ? Math.round(value) : value.toFixed(2));
    this.$("[data-wl-width]").textContent = String(format(windowWidth));
    this.$("[data-wl-center]").textContent = String(format(windowCenter));
    const matches = (key) => {
      const preset = this.ranges[key];
      return Math.abs(preset.lower - range.lower) < 1e-6 && Math.abs(preset.upper - range.upper) < 1e-6;
    };
    const current = PRESETS.find((preset) => matches(preset.key));
    for (const button of this.$$("[data-preset]")) {
      button.setAttribute("aria-pressed", String(button.dataset.preset === current?.key));
    }
  }

  // The checkbox says whether the image is shown inverted from its default (MONOCHROME1
  // files are inverted by default, so that bone is white).
  applyInvert() {
    const inverted = this.$("[data-invert]").checked;
    this.viewport.setProperties({ invert: inverted !== this.defaultInvert });
    this.viewport.render();
  }

  toggleInvert() {
    const box = this.$("[data-invert]");
    box.checked = !box.checked;
    this.applyInvert();
  }

  // --- zoom and pan -------------------------------------------------------------------

  // One image pixel per device pixel: the camera's parallel scale is half the view's height
  // in world units (mm, or pixels without spacing), and the canvas holds height × dpr pixels.
  oneToOne() {
    const ratio = window.devicePixelRatio || 1;
    const spacing = this.viewport.getImageData().spacing;
    this.viewport.setCamera({ parallelScale: (this.element.clientHeight * ratio * spacing[1]) / 2 });
    this.viewport.render();
    // Then shift by the fraction of a device pixel that puts pixel edges on pixel edges.
    const [origin] = imageCorners(this.viewport);
    const offset = origin.map((value) => value * ratio - Math.round(value * ratio));
    this.panBy(-offset[0] / ratio, -offset[1] / ratio);
    this.zoomState = "1:1";
    this.showZoom();
  }

  fit() {
    this.viewport.resetCamera({ resetPan: true, resetZoom: true });
    this.viewport.render();
    this.zoomState = "fit";
  }

  zoomBy(factor) {
    const { parallelScale } = this.viewport.getCamera();
    this.viewport.setCamera({ parallelScale: parallelScale / factor });
    this.viewport.render();
    this.zoomState = "free";
  }

  // Moves the image by (dx, dy) CSS pixels on screen.
  panBy(dx, dy) {
    const camera = this.viewport.getCamera();
    const from = this.viewport.canvasToWorld([0, 0]);
    const to = this.viewport.canvasToWorld([dx, dy]);
    const delta = to.map((value, axis) => value - from[axis]);
    const moved = (point) => point && point.map((value, axis) => value - delta[axis]);
    this.viewport.setCamera({ focalPoint: moved(camera.focalPoint), position: moved(camera.position) });
    this.viewport.render();
  }

  panStep(x, y) {
    this.panBy(x * this.element.clientWidth * PAN_STEP, y * this.element.clientHeight * PAN_STEP);
    if (this.zoomState === "fit") this.zoomState = "free";
  }

  // Image pixels per device pixel, from where the image's corners are drawn.
  devicePixelsPerImagePixel() {
    const ratio = window.devicePixelRatio || 1;
    const [origin, right, down] = imageCorners(this.viewport);
    const [columns, rows] = this.viewport.getImageData().dimensions;
    return [
      (Math.hypot(right[0] - origin[0], right[1] - origin[1]) * ratio) / columns,
      (Math.hypot(down[0] - origin[0], down[1] - origin[1]) * ratio) / rows,
    ];
  }

  // Page (CSS) coordinates of a point in image pixels, (0, 0) being the image's top-left
  // corner: how the end-to-end tests drag a measurement of a known number of pixels.
  imageToPage(x, y) {
    const data = this.viewport.getImageData();
    const world = data.imageData.indexToWorld([x - 0.5, y - 0.5, 0]);
    const [left, top] = this.viewport.worldToCanvas(world);
    const box = this.element.getBoundingClientRect();
    return [box.left + left, box.top + top];
  }

  showZoom() {
    const [scale] = this.devicePixelsPerImagePixel();
    const node = this.$("[data-zoom-readout]");
    if (!Number.isFinite(scale) || scale <= 0) {
      node.textContent = "–";
      delete node.dataset.scale;
      return;
    }
    const exact = Math.abs(scale - 1) < 1e-6;
    node.textContent = exact ? "100 % (1:1)" : `${Math.round(scale * 100)} %`;
    node.dataset.scale = String(scale);
  }

  // The view's CSS size in whole pixels, so that its canvas (CSS size × dpr) maps device
  // pixels to CSS pixels exactly and 1:1 is exact.
  fitElement() {
    const box = this.stage.getBoundingClientRect();
    this.element.style.width = `${Math.max(1, Math.floor(box.width))}px`;
    this.element.style.height = `${Math.max(1, Math.floor(box.height))}px`;
  }

  resized() {
    const before = `${this.element.style.width}x${this.element.style.height}`;
    this.fitElement();
    if (before === `${this.element.style.width}x${this.element.style.height}`) return;
    renderingEngine().resize(true, true);
    if (this.zoomState === "1:1") this.oneToOne();
    else if (this.zoomState === "fit") this.fit();
    this.heatmap?.draw();
  }

  rendered() {
    this.heatmap?.draw();
    this.showZoom();
  }

  // Gives the viewport back to Cornerstone: the element is leaving the page (a prior closed).
  stop() {
    this.resizing?.disconnect();
    if (!this.viewport) return;
    ToolGroupManager.destroyToolGroup(`tools-${this.id}`);
    renderingEngine().disableElement(this.id);
    this.viewport = null;
  }

  // --- linked views: a prior beside the current image ----------------------------------

  // The window and zoom relative to this image's own: the window as fractions of its file
  // window, the zoom as a multiple of "fit". Two images of different depth or size then
  // show the same contrast and the same extent of anatomy.
  viewState() {
    const { lower, upper } = this.viewport.getProperties().voiRange;
    const file = this.ranges.file;
    const span = file.upper - file.lower || 1;
    const zoom = this.fitScale() / this.viewport.getCamera().parallelScale;
    return { low: (lower - file.lower) / span, high: (upper - file.lower) / span, zoom };
  }

  showState({ low, high, zoom }) {
    const file = this.ranges.file;
    const span = file.upper - file.lower || 1;
    this.viewport.setProperties({
      voiRange: { lower: file.lower + low * span, upper: file.lower + high * span },
    });
    this.viewport.setCamera({ parallelScale: this.fitScale() / zoom });
    this.zoomState = Math.abs(zoom - 1) < 1e-6 ? "fit" : "free";
    this.viewport.render();
  }

  // The parallel scale at which the whole image fits the element (Cornerstone's "fit").
  fitScale() {
    const { dimensions, spacing } = this.viewport.getImageData();
    const aspect = this.element.clientWidth / Math.max(1, this.element.clientHeight);
    return Math.max(dimensions[1] * spacing[1], (dimensions[0] * spacing[0]) / aspect) / 2;
  }

  // --- heatmap, header, help ----------------------------------------------------------

  setUpHeatmap() {
    const url = this.data.heatmapUrl;
    if (!url) return null;
    const canvas = document.createElement("canvas");
    canvas.className = "cn-heatmap";
    canvas.setAttribute("aria-hidden", "true");
    canvas.dataset.heatmapCanvas = "";
    // Between the image and the measurement layer, so measurements stay on top.
    const imageCanvas = this.element.querySelector("canvas.cornerstone-canvas");
    imageCanvas.after(canvas);
    const layer = new HeatmapLayer(canvas, this.viewport);
    layer.load(url).catch(() => {
      this.$("[data-overlay-tools]")?.setAttribute("hidden", "");
    });
    return layer;
  }

  applyOverlay() {
    const toggle = this.$("[data-overlay-toggle]");
    const opacity = this.$("[data-overlay-opacity]");
    this.heatmap?.set(toggle ? toggle.checked : true, opacity ? opacity.value / 100 : 0.5);
  }

  toggleHeatmap() {
    const toggle = this.$("[data-overlay-toggle]");
    if (!toggle) return;
    toggle.checked = !toggle.checked;
    this.applyOverlay();
  }

  toggleHeader() {
    if (!this.header) return;
    const open = this.header.toggle();
    this.$("[data-action=header]").setAttribute("aria-expanded", String(open));
  }

  toggleHelp(force) {
    const help = this.$("[data-help]");
    help.hidden = !(force ?? help.hidden);
    this.$("[data-action=help]").setAttribute("aria-expanded", String(!help.hidden));
  }

  reset() {
    this.fit();
    this.$("[data-invert]").checked = false;
    this.applyInvert();
    this.applyPreset("file");
    this.setMode("wl");
    const toggle = this.$("[data-overlay-toggle]");
    const opacity = this.$("[data-overlay-opacity]");
    if (toggle) toggle.checked = true;
    if (opacity) opacity.value = opacity.defaultValue;
    this.applyOverlay();
  }

  describeImage() {
    const [columns, rows] = this.viewport.getImageData().dimensions;
    const pixel = metaData.get("imagePixelModule", this.imageId) || {};
    const modality = metaData.get("generalSeriesModule", this.imageId)?.modality;
    const bits = pixel.bitsStored ? ` · ${pixel.bitsStored}-bit` : "";
    const info = this.$("[data-image-info]");
    info.textContent = `${columns} × ${rows} px${bits}${modality && modality !== "OT" ? ` · ${modality}` : ""}`;
    info.dataset.columns = String(columns);
    info.dataset.rows = String(rows);
    const data = this.viewport.getImageData();
    const unit = this.$("[data-measure-unit]");
    if (data.hasPixelSpacing) {
      const [x, y] = data.spacing;
      const where = CALIBRATIONS[data.calibration?.type] || "";
      unit.textContent = `Lengths in mm (pixel spacing ${round(y)} × ${round(x)} mm${where}).`;
      unit.dataset.unit = "mm";
    } else {
      unit.textContent = "No pixel spacing in this file: lengths are in pixels (px), not mm.";
      unit.dataset.unit = "px";
    }
  }

  // --- controls and keys --------------------------------------------------------------

  bindControls() {
    const actions = {
      "zoom-in": () => this.zoomBy(1.25),
      "zoom-out": () => this.zoomBy(0.8),
      "one-to-one": () => this.oneToOne(),
      fit: () => this.fit(),
      reset: () => this.reset(),
      header: () => this.toggleHeader(),
      help: () => this.toggleHelp(),
      clear: () => this.clearMeasurements(),
    };
    this.actions = actions;
    this.root.addEventListener("click", (event) => {
      const button = event.target.closest("button");
      if (!button || !this.root.contains(button)) return;
      if (button.dataset.mode) this.setMode(button.dataset.mode);
      else if (button.dataset.preset) this.applyPreset(button.dataset.preset);
      else if (actions[button.dataset.action]) actions[button.dataset.action]();
    });
    this.root.addEventListener("input", (event) => {
      if (event.target.matches("[data-overlay-opacity], [data-overlay-toggle]")) this.applyOverlay();
    });
    this.root.addEventListener("change", (event) => {
      if (event.target.matches("[data-overlay-toggle]")) this.applyOverlay();
      if (event.target.matches("[data-invert]")) this.applyInvert();
    });
    this.root.addEventListener("keydown", (event) => this.key(event));
    // A click in the image gives it the keyboard (Cornerstone's handlers stop the default).
    this.element.addEventListener("pointerdown", () => this.element.focus({ preventScroll: true }));
    const headerPanel = this.$("[data-header-panel]");
    if (headerPanel && this.data.headerUrl) this.header = new HeaderPanel(headerPanel, this.data.headerUrl);
    // Controls set while the original was loading take effect now.
    this.applyOverlay();
    if (this.$("[data-invert]").checked) this.applyInvert();
  }

  key(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    const typing = target.matches("textarea, select, input:not([type=range]):not([type=checkbox])");
    if (typing && event.key !== "Escape") return;
    const handler = this.keyHandler(event, target);
    if (!handler) return;
    event.preventDefault();
    handler();
  }

  keyHandler(event, target) {
    const onImage = target === this.element;
    const arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (arrows[event.key]) {
      if (!onImage) return null; // arrows keep their meaning on buttons and sliders
      const [x, y] = arrows[event.key];
      return event.shiftKey
        ? () => this.adjustWindow(x * WL_STEP, -y * WL_STEP)
        : () => this.panStep(-x, -y);
    }
    const preset = PRESETS.find((item) => item.shortcut === event.key);
    if (preset) return () => this.applyPreset(preset.key);
    const keys = {
      w: () => this.setMode("wl"),
      p: () => this.setMode("pan"),
      z: () => this.setMode("zoom"),
      m: () => this.setMode("measure"),
      1: this.actions["one-to-one"],
      f: this.actions.fit,
      i: () => this.toggleInvert(),
      r: this.actions.reset,
      h: () => this.toggleHeatmap(),
      d: this.actions.header,
      c: this.actions.clear,
      "+": this.actions["zoom-in"],
      "=": this.actions["zoom-in"],
      "-": this.actions["zoom-out"],
      "?": this.actions.help,
      Escape: () => {
        this.toggleHelp(false);
        if (this.header?.open) this.toggleHeader();
      },
    };
    return keys[event.key.length === 1 ? event.key.toLowerCase() : event.key] || null;
  }
}

// What Cornerstone's calibration type of a projection radiograph's spacing means.
const CALIBRATIONS = {
  Proj: ", at the detector: not corrected for magnification",
  ERMF: ", corrected for the radiographic magnification",
  Calibrated: ", calibrated with a fiducial",
  Unknown: ", the file does not say at which plane",
  User: ", calibrated by a user",
};

// Cornerstone's unit is "mm", "px" or "mm <calibration>"; the text on the image is the unit.
function baseUnit(unit) {
  return String(unit || "").split(" ")[0];
}

function lengthText(data, targetId) {
  const stats = data.cachedStats?.[targetId];
  if (!stats || !Number.isFinite(stats.length)) return undefined;
  return [`${stats.length.toFixed(2)} ${baseUnit(stats.unit)}`];
}

function round(value) {
  return Number(value.toFixed(4)).toString();
}

// Resolves on the viewport's next IMAGE_RENDERED (or after 5 s), once it is on the canvas.
function nextRender(element) {
  return new Promise((resolve) => {
    const done = () => requestAnimationFrame(() => resolve());
    element.addEventListener(Events.IMAGE_RENDERED, done, { once: true });
    setTimeout(done, 5000);
  });
}

// Cornerstone rejects a load with an Error, a string, a code (the codecs' exceptions), the
// XMLHttpRequest that failed or { error }: always an Error with a readable message here.
function loadError(failure) {
  const cause = failure?.error ?? failure;
  if (cause instanceof Error) return cause;
  if (typeof XMLHttpRequest !== "undefined" && cause instanceof XMLHttpRequest) {
    return new Error(`the original could not be fetched (HTTP ${cause.status || "error"})`);
  }
  if (typeof cause === "number") return new Error(`the decoder failed (code ${cause})`);
  return new Error(String(cause || "unknown error"));
}

function reasonOf(error) {
  return String(loadError(error).message || "unknown error").replace(/[.\s]+$/, "");
}
