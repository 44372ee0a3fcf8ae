// Radiograph viewer: heatmap toggle and opacity, zoom and pan (CSS transform), window/level
// as brightness/contrast CSS filters, invert. No canvas needed: the heatmap is its own layer.
(function () {
  "use strict";
  function setup(root) {
    var stage = root.querySelector("[data-stage]");
    var layers = root.querySelector("[data-layers]");
    var photo = root.querySelector("[data-radiograph]");
    var heat = root.querySelector("[data-heatmap]");
    var state = { zoom: 1, x: 0, y: 0, dragging: false, lastX: 0, lastY: 0 };
    function q(sel) { return root.querySelector(sel); }

    function applyOverlay() {
      var toggle = q("[data-overlay-toggle]"), opacity = q("[data-overlay-opacity]");
      heat.style.opacity = toggle && !toggle.checked ? 0 : (opacity ? opacity.value / 100 : 0.5);
    }
    function applyFilter() {
      var b = q("[data-brightness]"), c = q("[data-contrast]"), inv = q("[data-invert]");
      var parts = [];
      if (b) parts.push("brightness(" + b.value / 100 + ")");
      if (c) parts.push("contrast(" + c.value / 100 + ")");
      if (inv && inv.checked) parts.push("invert(1)");
      photo.style.filter = parts.join(" ");
    }
    function applyTransform() {
      layers.style.transform = "translate(" + state.x + "px," + state.y + "px) scale(" + state.zoom + ")";
    }
    function zoomBy(factor) {
      state.zoom = Math.min(8, Math.max(1, state.zoom * factor));
      if (state.zoom === 1) { state.x = 0; state.y = 0; }
      applyTransform();
    }
    root.addEventListener("input", function () { applyOverlay(); applyFilter(); });
    root.addEventListener("change", function () { applyOverlay(); applyFilter(); });
    var zin = q("[data-zoom-in]"), zout = q("[data-zoom-out]"), reset = q("[data-reset]");
    if (zin) zin.addEventListener("click", function () { zoomBy(1.25); });
    if (zout) zout.addEventListener("click", function () { zoomBy(0.8); });
    if (reset) reset.addEventListener("click", function () {
      state.zoom = 1; state.x = 0; state.y = 0; applyTransform();
      ["data-brightness", "data-contrast"].forEach(function (a) { var el = q("[" + a + "]"); if (el) el.value = 100; });
      var inv = q("[data-invert]"); if (inv) inv.checked = false;
      applyFilter();
    });
    if (stage.classList.contains("large")) {
      stage.addEventListener("wheel", function (event) { event.preventDefault(); zoomBy(event.deltaY < 0 ? 1.1 : 0.9); }, { passive: false });
      stage.addEventListener("pointerdown", function (event) {
        state.dragging = true; state.lastX = event.clientX; state.lastY = event.clientY;
        stage.setPointerCapture(event.pointerId);
      });
      stage.addEventListener("pointermove", function (event) {
        if (!state.dragging) return;
        if (event.shiftKey) {  // shift-drag: window/level, like a PACS viewer
          var b = q("[data-brightness]"), c = q("[data-contrast]");
          if (b) b.value = Number(b.value) - (event.clientY - state.lastY);
          if (c) c.value = Number(c.value) + (event.clientX - state.lastX);
          applyFilter();
        } else {
          state.x += event.clientX - state.lastX; state.y += event.clientY - state.lastY;
          applyTransform();
        }
        state.lastX = event.clientX; state.lastY = event.clientY;
      });
      stage.addEventListener("pointerup", function () { state.dragging = false; });
    }
    applyOverlay(); applyFilter();
    root.chestnetViewer = { applyOverlay: applyOverlay };
  }
  window.ChestNetViewer = { setup: setup };
  document.querySelectorAll("[data-viewer]").forEach(setup);
})();
