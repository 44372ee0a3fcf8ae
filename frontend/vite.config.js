// Builds the review page's viewer into ../static/viewer/ (committed, so `make run` needs no
// Node.js). `make frontend` runs this after `npm ci`. Everything the viewer loads at run time
// is a file under static/viewer/, found relative to the file that asks for it (base "./"):
// the entry viewer.js, its chunks, the DICOM decoding worker (workers/) and the codecs'
// WebAssembly (assets/, which Vite resolves from the loader's `new URL("@cornerstonejs/
// codec-…/decodewasm", import.meta.url)`). Nothing comes from a CDN.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const outDir = fileURLToPath(new URL("../static/viewer", import.meta.url));

// The site's Content-Security-Policy refuses inline styles (style-src 'self'), and with them
// a style attribute set by setAttribute. Cornerstone's SVG text labels (a length's readout)
// set theirs so; through the CSSOM (element.style), which the policy allows, they keep it.
// The build fails if the line is gone, rather than ship a viewer the policy breaks.
const STYLE_ATTRIBUTE = "textElement.setAttribute('style', combinedStyle);";
const cspSafeTextStyle = {
  name: "chestnet-csp-safe-text-style",
  transform(code, id) {
    if (!id.replaceAll("\\", "/").endsWith("@cornerstonejs/tools/dist/esm/drawingSvg/drawTextBox.js")) {
      return null;
    }
    if (!code.includes(STYLE_ATTRIBUTE)) {
      throw new Error(`${id}: ${STYLE_ATTRIBUTE} not found (see vite.config.js)`);
    }
    return { code: code.replace(STYLE_ATTRIBUTE, "textElement.style.cssText = combinedStyle;"), map: null };
  },
};

export default defineConfig({
  base: "./",
  publicDir: false,
  plugins: [cspSafeTextStyle],
  resolve: {
    // See src/stubs/xmlbuilder2.js: the real one cannot load in a browser without Node's events.
    alias: { xmlbuilder2: fileURLToPath(new URL("src/stubs/xmlbuilder2.js", import.meta.url)) },
  },
  build: {
    outDir,
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    modulePreload: false,
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 4096,
    rollupOptions: {
      input: { viewer: fileURLToPath(new URL("src/main.js", import.meta.url)) },
      output: {
        entryFileNames: "[name].js",
        chunkFileNames: "chunks/[name]-[hash].js",
        assetFileNames: "assets/[name]-[hash][extname]",
      },
    },
  },
  worker: {
    format: "es",
    rollupOptions: {
      output: {
        entryFileNames: "workers/[name]-[hash].js",
        chunkFileNames: "workers/[name]-[hash].js",
        assetFileNames: "assets/[name]-[hash][extname]",
      },
    },
  },
});
