// The case page's preview: the 8-bit preview image with the Grad-CAM heatmap as its own layer,
// its toggle and opacity. static/js/case.js calls `chestnetViewer.applyOverlay()` when a
// heatmap arrives. The review page's diagnostic viewer (the original at full resolution and
// bit depth) is static/viewer/viewer.js, built from frontend/.
(function () {
  "use strict";
  function setup(root) {
    var heat = root.querySelector("[data-heatmap]");
    function applyOverlay() {
      var toggle = root.querySelector("[data-overlay-toggle]");
      var opacity = root.querySelector("[data-overlay-opacity]");
      if (!heat) return;
      heat.style.opacity = toggle && !toggle.checked ? 0 : (opacity ? opacity.value / 100 : 0.5);
    }
    root.addEventListener("input", applyOverlay);
    root.addEventListener("change", applyOverlay);
    applyOverlay();
    root.chestnetViewer = { applyOverlay: applyOverlay };
  }
  window.ChestNetViewer = { setup: setup };
  document.querySelectorAll("[data-viewer]:not([data-viewer-full])").forEach(setup);
})();
