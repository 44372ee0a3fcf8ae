// Entry point of static/viewer/viewer.js, loaded by the review page as a module. Each
// [data-viewer-full] element becomes a Viewer; `window.chestnetViewers` lists them (the
// end-to-end tests read Cornerstone's viewport through it). `window.chestnetViewerStart(root)`
// starts one on an element added to the page later (an image that arrived while it was open).
import { initCornerstone } from "./cornerstone.js";
import { Viewer } from "./viewer.js";

window.chestnetViewers = [];

// Starts a Viewer on `root` once Cornerstone is set up (once per page), unless it has one.
// Resolves with the Viewer; a root that cannot be shown shows the server's rendering instead.
export function startViewer(root) {
  if (root.chestnetViewer) return root.chestnetViewerStarted;
  const viewer = new Viewer(root);
  root.chestnetViewer = viewer;
  window.chestnetViewers.push(viewer);
  root.chestnetViewerStarted = initCornerstone()
    .then(() => viewer.start())
    .catch((error) => {
      // Shown on the page (the banner says why); a warning, not an error, in the console.
      console.warn("ChestNet viewer:", error);
      viewer.fail(error);
    })
    .then(() => viewer);
  return root.chestnetViewerStarted;
}

window.chestnetViewerStart = startViewer;

for (const root of document.querySelectorAll("[data-viewer-full]")) startViewer(root);
