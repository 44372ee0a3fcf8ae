// A single-channel Cornerstone image from values already in display units (slope 1,
// intercept 0): what the DICOM and the PNG/JPEG loaders both hand to the viewport.
import { utilities } from "@cornerstonejs/core";

export function greyImage(imageId, values, { rows, columns, window, spacing, invert, ...extra }) {
  const [min, max] = minMax(values);
  const voxelManager = utilities.VoxelManager.createImageVoxelManager({
    width: columns,
    height: rows,
    numberOfComponents: 1,
    scalarData: values,
    id: imageId,
  });
  return {
    imageId,
    minPixelValue: min,
    maxPixelValue: max,
    slope: 1,
    intercept: 0,
    // A file's own window as it is (even absent); else the full range.
    windowCenter: window ? window.center : (max + min) / 2,
    windowWidth: window ? window.width : Math.max(1, max - min),
    voiLUTFunction: window ? window.fn : "LINEAR",
    rows,
    columns,
    height: rows,
    width: columns,
    color: false,
    rgba: false,
    numberOfComponents: 1,
    columnPixelSpacing: spacing?.columnPixelSpacing ?? 1,
    rowPixelSpacing: spacing?.rowPixelSpacing ?? 1,
    invert: Boolean(invert),
    sizeInBytes: values.byteLength,
    getPixelData: () => voxelManager.getScalarData(),
    voxelManager,
    ...extra,
  };
}

export function minMax(data) {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const value = data[i];
    if (value < min) min = value;
    if (value > max) max = value;
  }
  return [min, max];
}
