// Builds the review page's viewer into ../static/viewer/ (committed, so `make run` needs no
// Node.js). `make frontend` runs this after `npm ci`. Everything the viewer loads at run time
// is a file under static/viewer/, found relative to the file that asks for it (base "./"):
// the entry viewer.js, its chunks, the DICOM decoding worker (workers/) and the codecs'
// WebAssembly (assets/, which Vite resolves from the loader's `new URL("@cornerstonejs/
// codec-…/decodewasm", import.meta.url)`). Nothing comes from a CDN.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const outDir = fileURLToPath(new URL("../static/viewer", import.meta.url));

export default defineConfig({
  base: "./",
  publicDir: false,
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
