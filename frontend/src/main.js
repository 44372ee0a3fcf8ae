// Entry point of static/viewer/viewer.js, loaded by the review page as a module. Each
// [data-viewer-full] element shown on the page becomes a Viewer; `window.chestnetViewers`
// lists them (the end-to-end tests read Cornerstone's viewport through it). For the page's
// scripts (static/js/review_room.js, review_live.js): `window.chestnetViewerStart(root)`
// starts one on an element shown later (another layout, an image that arrived, a prior),
// `chestnetViewerStop(root)` gives one back before its element leaves the page, and
// `chestnetViewerLink(a, b)` links two viewers' window/level and zoom (resolves with the
// function that unlinks them).
import { initCornerstone } from "./cornerstone.js";
import { Viewer, linkViewers } from "./viewer.js";

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

export function stopViewer(root) {
  const viewer = root.chestnetViewer;
  if (!viewer) return;
  viewer.stop();
  window.chestnetViewers = window.chestnetViewers.filter((item) => item !== viewer);
  delete root.chestnetViewer;
  delete root.chestnetViewerStarted;
}

export async function linkRoots(a, b) {
  const [first, second] = await Promise.all([startViewer(a), startViewer(b)]);
  const shown = (viewer) => viewer.viewport && !viewer.root.classList.contains("cn-failed");
  return shown(first) && shown(second) ? linkViewers(first, second) : () => {};
}

window.chestnetViewerStart = startViewer;
window.chestnetViewerStop = stopViewer;
window.chestnetViewerLink = linkRoots;

// Viewers in hidden cells of the layout start when they are shown (review_room.js).
for (const root of document.querySelectorAll("[data-viewer-full]")) {
  if (root.getClientRects().length) startViewer(root);
}
