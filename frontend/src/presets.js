// Window presets. A radiograph has no Hounsfield scale, so its presets are fractions of the
// image's own robust range R = [p1, p99] (the 1st and 99th percentiles of its pixel values),
// counted in displayed brightness (mirrored for MONOCHROME1, where high values are dark):
//   file window  the header's Window Center/Width, else the full range min..max;
//   lung         0-60 % of R: the dark, air-filled lung fields spread over the whole grey
//                scale (mediastinum and bone go white);
//   mediastinum  35-100 % of R: heart, mediastinum and soft tissue (the lungs go black);
//   bone         60-105 % of R: only the brightest structures, with the most contrast.
// CT images (Modality CT) get the usual Hounsfield windows instead.
import { metaData, utilities } from "@cornerstonejs/core";

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
  const ranges = { file: fileWindow(image, imageId, stats) };
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

function fileWindow(image, imageId, stats) {
  const voi = metaData.get("voiLutModule", imageId);
  const center = first(voi?.windowCenter);
  const width = first(voi?.windowWidth);
  if (Number.isFinite(center) && Number.isFinite(width) && width > 0) {
    return toLowHighRange(width, center, image.voiLUTFunction || undefined);
  }
  return { lower: stats.min, upper: Math.max(stats.max, stats.min + 1) };
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
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v < min) min = v;
    if (v > max) max = v;
  }
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
