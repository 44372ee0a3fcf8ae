// Cornerstone3D set up once per page: rendering, the DICOM loader (wadouri, decoding in a
// web worker; the codecs' WebAssembly is bundled in static/viewer/assets/) behind ours
// (dicomLoader.js: what the server makes of the same file), the PNG/JPEG loader and the tools.
import { init as coreInit } from "@cornerstonejs/core";
import { init as dicomLoaderInit } from "@cornerstonejs/dicom-image-loader";
import {
  LengthTool,
  PanTool,
  WindowLevelTool,
  ZoomTool,
  addTool,
  init as toolsInit,
} from "@cornerstonejs/tools";

import { responseBytes } from "./deflated.js";
import { registerDicomLoader } from "./dicomLoader.js";
import { lowerLibraryNotes } from "./libraryLog.js";
import { registerRasterLoader } from "./rasterLoader.js";

let ready = null;

export function initCornerstone() {
  ready ||= (async () => {
    lowerLibraryNotes();
    await coreInit();
    dicomLoaderInit({ maxWebWorkers: 1, beforeProcessing: responseBytes });
    registerDicomLoader();
    registerRasterLoader();
    await toolsInit();
    for (const tool of [WindowLevelTool, PanTool, ZoomTool, LengthTool]) addTool(tool);
  })();
  return ready;
}
