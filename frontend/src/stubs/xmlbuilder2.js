// vtk.js's VTP (XML) mesh reader and writer, which Cornerstone's Mesh cache and orientation
// marker import, use xmlbuilder2, which needs Node's `events` at load time. The viewer never
// reads or writes VTP meshes, so the bundle gets this stand-in instead (vite.config.js).
export function create() {
  throw new Error("VTP (XML) meshes are not supported by ChestNet's viewer.");
}
