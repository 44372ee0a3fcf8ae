// Entry point of static/viewer/viewer.js, loaded by the review page as a module. Each
// [data-viewer-full] element becomes a Viewer; `window.chestnetViewers` lists them (the
// end-to-end tests read Cornerstone's viewport through it).
import { initCornerstone } from "./cornerstone.js";
import { Viewer } from "./viewer.js";

const roots = [...document.querySelectorAll("[data-viewer-full]")];
window.chestnetViewers = [];

if (roots.length) {
  initCornerstone().then(
    () =>
      Promise.all(
        roots.map(async (root) => {
          const viewer = new Viewer(root);
          root.chestnetViewer = viewer;
          window.chestnetViewers.push(viewer);
          try {
            await viewer.start();
          } catch (error) {
            console.error("ChestNet viewer:", error);
            viewer.fail(error);
          }
        }),
      ),
    (error) => {
      console.error("ChestNet viewer:", error);
      for (const root of roots) new Viewer(root).fail(error);
    },
  );
}
