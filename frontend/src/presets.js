// Window presets. A radiograph has no Hounsfield scale, so its presets are fractions of the
// image's own robust range R = [p1, p99] (the 1st and 99th percentiles of its pixel values),
// counted in displayed brightness (mirrored for MONOCHROME1, where high values are dark):
//   file window  the header's Window Center/Width where it fits the pixel values, else the
//                window from the pixel data (initialWindow below);
//   lung         0-60 % of R: the dark, air-filled lung fields spread over the whole grey
//                scale (mediastinum and bone go white);
//   mediastinum  35-100 % of R: heart, mediastinum and soft tissue (the lungs go black);
//   bone         60-105 % of R: only the brightest structures, with the most contrast.
// CT images (Modality CT) get the usual Hounsfield windows instead.
import { metaData, utilities } from "@cornerstonejs/core";

import { minMax } from "./greyImage.js";

const { toLowHighRange } = utilities.windowLevel;

export const PRESETS = [
  { key: "file", label: "File window", shortcut: "2" },
  { key: "lung", label: "Lung", shortcut: "3" },
  { key: "mediastinum", label: "Mediastinum", shortcut: "4" },
  { key: "bone", label: "Bone", shortcut: "5" },
];

const RADIOGRAPH = { lung: [0, 0.6], mediastinum: [0.35, 1.0], bone: [0.6, 1.05] };
const CT = { lung: [1500, -600], mediastinum: [350, 50], bone: [2000, 500] }; // [W, L]

export function presetRanges(image, imageId) {
  const stats = pixelStats(image);
  const ranges = { file: initialWindow(image, imageId) };
  const modality = metaData.get("generalSeriesModule", imageId)?.modality;
  if (modality === "CT") {
    for (const [key, [width, center]] of Object.entries(CT)) {
      ranges[key] = toLowHighRange(width, center);
    }
    return ranges;
  }
  const photometric = metaData.get("imagePixelModule", imageId)?.photometricInterpretation;
  const span = Math.max(stats.p99 - stats.p1, 1);
  for (const [key, [from, to]] of Object.entries(RADIOGRAPH)) {
    ranges[key] =
      photometric === "MONOCHROME1"
        ? { lower: stats.p99 - to * span, upper: stats.p99 - from * span }
        : { lower: stats.p1 + from * span, upper: stats.p1 + to * span };
  }
  return ranges;
}

// The window the viewer opens with, as the server reads the file (ml/preprocessing.py):
// the file's own Window Center/Width unless it does not fit the pixel values (it leaves more
// than 98 % of them at one end of the grey scale, where the values themselves are not), else
// the window the model's preprocessing stretches every image to: the 0.5th to 99.5th
// percentile of the pixel values. `source` says which ("file" or "pixels"), `reason` why.
const MAX_CLIPPED_FRACTION = 0.98;
const LOW_PERCENTILE = 0.5;
const HIGH_PERCENTILE = 99.5;
const PERCENTILE_SAMPLE = 250_000;

export function initialWindow(image, imageId) {
  const voi = metaData.get("voiLutModule", imageId);
  const center = first(voi?.windowCenter);
  const width = first(voi?.windowWidth);
  if (!Number.isFinite(center) || !Number.isFinite(width)) {
    const reason = "The file has no window of its own.";
    return { ...pixelWindow(image), source: "pixels", reason };
  }
  const fn = image.voiLUTFunction || undefined;
  const range = width > 0 ? toLowHighRange(width, center, fn) : null;
  if (range && !windowMisfits(image.getPixelData(), range)) return { ...range, source: "file" };
  const reason = `The file's window (W ${width} / L ${center}) does not fit its pixel values.`;
  return { ...pixelWindow(image), source: "pixels", reason };
}

// Whether the window, not the data, puts nearly all pixels at one end of the grey scale.
function windowMisfits(data, { lower, upper }) {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < data.length; i++) {
    if (data[i] < min) min = data[i];
    if (data[i] > max) max = data[i];
  }
  const low = Math.max(lower, min);
  const high = Math.min(upper, max);
  let atLow = 0;
  let atHigh = 0;
  let atMin = 0;
  let atMax = 0;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v <= low) atLow++;
    if (v >= high) atHigh++;
    if (v === min) atMin++;
    if (v === max) atMax++;
  }
  const n = data.length || 1;
  const clipped = low >= high ? 1 : Math.max(atLow, atHigh) / n;
  return clipped > MAX_CLIPPED_FRACTION && Math.max(atMin, atMax) / n <= MAX_CLIPPED_FRACTION;
}

// ml.preprocessing.normalize_intensity's range: numpy's (linear) percentiles of a regular
// subsample of the pixel values, every step-th row and column; min..max if they coincide.
export function pixelWindow(image) {
  const data = image.getPixelData();
  const { rows, columns } = image;
  const step = Math.max(1, Math.floor(Math.sqrt((rows * columns) / PERCENTILE_SAMPLE)));
  const sample = [];
  for (let y = 0; y < rows; y += step) {
    for (let x = 0; x < columns; x += step) sample.push(data[y * columns + x]);
  }
  const sorted = Float64Array.from(sample).sort();
  let lower = percentile(sorted, LOW_PERCENTILE);
  let upper = percentile(sorted, HIGH_PERCENTILE);
  if (!(upper - lower >= 1e-6)) [lower, upper] = [sorted[0], sorted[sorted.length - 1]];
  if (!(upper - lower >= 1e-6)) upper = lower + 1;
  return { lower, upper };
}

function percentile(sorted, q) {
  const position = (q / 100) * (sorted.length - 1);
  const below = Math.floor(position);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below] + (sorted[above] - sorted[below]) * (position - below);
}

function first(value) {
  const item = Array.isArray(value) || ArrayBuffer.isView(value) ? value[0] : value;
  return item === undefined || item === null ? NaN : Number(item);
}

// Min, max and the 1st/99th percentiles of the modality values (rescale applied when the
// loader has not already applied it), from a 4096-bin histogram.
export function pixelStats(image) {
  const data = image.getPixelData();
  const scaled = image.preScale?.scaled;
  const slope = scaled ? 1 : (image.slope ?? 1);
  const intercept = scaled ? 0 : (image.intercept ?? 0);
  const [min, max] = minMax(data);
  const bins = new Uint32Array(4096);
  const scale = max > min ? (bins.length - 1) / (max - min) : 0;
  for (let i = 0; i < data.length; i++) bins[Math.round((data[i] - min) * scale)]++;
  const at = (fraction) => {
    const target = fraction * data.length;
    let seen = 0;
    for (let b = 0; b < bins.length; b++) {
      seen += bins[b];
      if (seen >= target) return scale ? min + b / scale : min;
    }
    return max;
  };
  const rescale = (v) => v * slope + intercept;
  const [lo, hi] = slope >= 0 ? [min, max] : [max, min];
  const [p1, p99] = slope >= 0 ? [at(0.01), at(0.99)] : [at(0.99), at(0.01)];
  return { min: rescale(lo), max: rescale(hi), p1: rescale(p1), p99: rescale(p99) };
}
