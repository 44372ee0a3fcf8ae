// What Cornerstone's libraries log as console errors though nothing is wrong, or though the
// viewer handles it and says so, goes to a lower level; every other message stays an error.
//   - dcmjs (its metadata reader) reads on past what it tolerates in a file: a VR it does not
//     know ("Invalid vr type ox - using OW", implicit-VR Pixel Data) or a fixed-length value of
//     another length ("Invalid length for fixed length tag, vr AS", an age written "3Y"):
//     console.debug.
//   - A decoding that fails in the worker ("Error executing method 'decodeTask'"): the load
//     fails, the viewer shows the server's rendering under a banner that says why, and
//     main.js logs the reason as a warning: console.warn.
import { logging } from "@cornerstonejs/utils";

const LOWERED = [
  { logger: "", note: "Invalid vr type", to: "debug" },
  { logger: "", note: "Invalid length for fixed length tag", to: "debug" },
  { logger: "validation.dcmjs", note: "Invalid vr type", to: "debug" },
  {
    logger: "cs3d.core.webWorkerManager.webWorkerManager",
    note: "Error executing method 'decodeTask'",
    to: "warn",
  },
];

export function lowerLibraryNotes() {
  const root = logging.log;
  for (const name of new Set(LOWERED.map((item) => item.logger))) {
    const notes = LOWERED.filter((item) => item.logger === name);
    const logger = name ? root.getLogger(name) : root;
    const make = logger.methodFactory;
    logger.methodFactory = (method, level, loggerName) => {
      const write = make.call(logger, method, level, loggerName);
      if (method !== "error") return write;
      return (...args) => {
        const text = String(args[0] ?? "");
        const lowered = notes.find((item) => text.startsWith(item.note));
        if (lowered) console[lowered.to](...args);
        else write(...args);
      };
    };
    logger.rebuild();
  }
}
