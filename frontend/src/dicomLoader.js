// DICOM originals as the server reads them (ml/preprocessing.py, through pydicom): every
// transfer syntax the DICOM listener accepts, the stored values made what the file says they
// are, then its Modality LUT Sequence or Rescale Slope/Intercept. Cornerstone's wadouri loader
// parses and decodes (in its worker, with the bundled codecs); this scheme, "chestnet-dicom:",
// wraps it and fixes what it leaves out or gets wrong for radiographs:
//   - a deflated file is inflated before parsing (deflated.js: its parser does not);
//   - stored values that do not fit Bits Stored and Pixel Representation (a JPEG 2000
//     codestream that says unsigned in a signed file, or the reverse) are reread as the file
//     says, as pydicom does;
//   - the Modality LUT Sequence is applied (Cornerstone applies only Rescale Slope/Intercept);
//   - a Pixel Spacing of zero (some CR plates write "0.000\0.000") means no spacing, not a
//     zero-sized image: drawn with it, the image was black and its zoom "NaN %";
//   - pixel data shorter than the image it describes is an error, not a black canvas;
//   - Presentation LUT Shape INVERSE shows white-is-low, as MONOCHROME1 does.
// The image's pixel values are then the modality values (slope 1, intercept 0), the units of
// the file's Window Center/Width.
import { imageLoader, metaData } from "@cornerstonejs/core";
import { Enums as MetadataEnums } from "@cornerstonejs/metadata";

import { greyImage, minMax } from "./greyImage.js";

const SCHEME = "chestnet-dicom";
// The whole header as parsed (keywords as keys), for what Cornerstone's modules leave out.
const NATURALIZED = MetadataEnums.MetadataModules.NATURALIZED;
const PREFIX = `${SCHEME}:`;

export function dicomImageId(url) {
  return `${PREFIX}wadouri:${new URL(url, window.location.href).href}`;
}

export function registerDicomLoader() {
  imageLoader.registerImageLoader(SCHEME, (imageId) => ({ promise: loadDicom(imageId) }));
  metaData.addProvider(dicomMetadata, 10000);
}

async function loadDicom(imageId) {
  const inner = imageId.slice(PREFIX.length);
  // Stored values as decoded, without Cornerstone's rescale: the modality transform is ours.
  const decoded = await imageLoader.loadImage(inner, { preScale: { enabled: false } });
  const pixel = metaData.get("imagePixelModule", inner) || {};
  const instance = metaData.get(NATURALIZED, inner) || {};
  const stored = decoded.getPixelData();
  checkSize(decoded, stored);
  if ((decoded.numberOfComponents || 1) > 1 || decoded.color) return { ...decoded, imageId };
  const values = modalityValues(storedAsDeclared(stored, pixel), instance);
  return cornerstoneImage(imageId, decoded, values, metaData.get("generalSeriesModule", inner));
}

function checkSize(image, data) {
  const { rows, columns } = image;
  if (!(rows > 0 && columns > 0)) throw new Error("the file does not say how large its image is");
  const expected = rows * columns * (image.numberOfComponents || 1);
  if (!data || data.length < expected) {
    throw new Error("its pixel data is shorter than the image it describes");
  }
}

// --- stored values -------------------------------------------------------------------

// The stored values as Bits Stored and Pixel Representation say, as pydicom reads them: the
// bits above Bits Stored dropped and, for signed pixels, the value sign-extended from there.
// A decoder's output can disagree (a JPEG 2000 codestream that says unsigned in a signed
// file comes out as 0..65535); values that already fit are left as they are.
function storedAsDeclared(data, pixel) {
  const bits = Number(pixel.bitsStored) || 16;
  const signed = Number(pixel.pixelRepresentation) === 1;
  if (bits >= 31) return data;
  const [min, max] = minMax(data);
  const sign = 2 ** (bits - 1);
  const fits = signed ? min >= -sign && max < sign : min >= 0 && max < 2 * sign;
  if (fits) return data;
  const mask = 2 * sign - 1;
  const wide = bits > 16;
  const Type = signed ? (wide ? Int32Array : Int16Array) : wide ? Uint32Array : Uint16Array;
  const out = new Type(data.length);
  for (let i = 0; i < data.length; i++) {
    const value = data[i] & mask;
    out[i] = signed && value >= sign ? value - 2 * sign : value;
  }
  return out;
}

// --- modality transform --------------------------------------------------------------

function modalityValues(stored, instance) {
  const lut = modalityLut(instance);
  if (lut) return applyLut(stored, lut);
  const slope = toNumber(instance.RescaleSlope, 1);
  const intercept = toNumber(instance.RescaleIntercept, 0);
  if (slope === 1 && intercept === 0) return stored;
  const integral = Number.isInteger(slope) && Number.isInteger(intercept);
  const out = new Float32Array(stored.length);
  for (let i = 0; i < stored.length; i++) out[i] = stored[i] * slope + intercept;
  return integral ? narrowest(out) : out;
}

// The first item of the Modality LUT Sequence: { first, values }, else null.
function modalityLut(instance) {
  const item = first(instance.ModalityLUTSequence);
  const descriptor = item?.LUTDescriptor;
  if (!item || !descriptor || descriptor.length < 3) return null;
  const entries = Number(descriptor[0]) || 65536;
  const values = lutValues(item.LUTData, entries);
  if (!values) return null;
  return { first: Number(descriptor[1]), values };
}

// LUT Data: 16-bit words (OW, as bytes) or numbers (US).
function lutValues(data, entries) {
  const raw = first(data);
  let values = null;
  if (raw instanceof ArrayBuffer) {
    values = new Uint16Array(raw.slice(0, Math.min(entries, raw.byteLength >> 1) * 2));
  } else if (ArrayBuffer.isView(data) || Array.isArray(data)) {
    values = Array.from(data, Number);
  }
  return values && values.length >= entries ? values.slice(0, entries) : null;
}

function applyLut(stored, { first: firstMapped, values }) {
  const out = new Uint16Array(stored.length);
  const last = values.length - 1;
  for (let i = 0; i < stored.length; i++) {
    const index = stored[i] - firstMapped;
    out[i] = values[index < 0 ? 0 : index > last ? last : index];
  }
  return out;
}

// Integral values in the smallest array Cornerstone draws: 16-bit where they fit.
function narrowest(values) {
  const [min, max] = minMax(values);
  if (min >= 0 && max <= 65535) return Uint16Array.from(values);
  if (min >= -32768 && max <= 32767) return Int16Array.from(values);
  return values;
}

// --- the image and its metadata ------------------------------------------------------

function cornerstoneImage(imageId, decoded, values, series) {
  return greyImage(imageId, values, {
    rows: decoded.rows,
    columns: decoded.columns,
    // The file's own window (undefined when it has none), in these modality units.
    window: {
      center: decoded.windowCenter,
      width: decoded.windowWidth,
      fn: decoded.voiLUTFunction,
    },
    spacing: planeModule(imageId),
    invert: metaData.get("imagePixelModule", imageId)?.photometricInterpretation === "MONOCHROME1",
    dataType: values.constructor.name,
    preScale: {
      enabled: true,
      scaled: true,
      scalingParameters: { rescaleSlope: 1, rescaleIntercept: 0, modality: series?.modality },
    },
  });
}

function planeModule(imageId) {
  return metaData.get("imagePlaneModule", imageId) || { rowPixelSpacing: 1, columnPixelSpacing: 1 };
}

// Metadata of a chestnet-dicom: image is that of the wadouri image it wraps, but for what
// this loader changed.
function dicomMetadata(type, imageId, options) {
  if (typeof imageId !== "string" || !imageId.startsWith(PREFIX)) return undefined;
  const inner = imageId.slice(PREFIX.length);
  const value = metaData.get(type, inner, options);
  switch (type) {
    case "imagePlaneModule":
      return value && withValidSpacing(value);
    case "calibratedPixelSpacing":
      return value && validSpacing(value.rowPixelSpacing, value.columnPixelSpacing) ? value : null;
    case "modalityLutModule":
      return { ...value, rescaleSlope: 1, rescaleIntercept: 0, modalityLUTSequence: undefined };
    case "imagePixelModule":
      return value && displayedInverted(inner)
        ? { ...value, photometricInterpretation: "MONOCHROME1" }
        : value;
    default:
      return value;
  }
}

function withValidSpacing(plane) {
  if (validSpacing(plane.rowPixelSpacing, plane.columnPixelSpacing)) return plane;
  return {
    ...plane,
    rowPixelSpacing: 1,
    columnPixelSpacing: 1,
    pixelSpacing: undefined,
    usingDefaultValues: true,
  };
}

function validSpacing(...values) {
  return values.every((value) => Number.isFinite(Number(value)) && Number(value) > 0);
}

// Presentation LUT Shape INVERSE: low values white, as in MONOCHROME1 (which DX files pair
// with it for the one inversion: inverted once, not twice, as the server does).
function displayedInverted(inner) {
  const shape = String(first(metaData.get(NATURALIZED, inner)?.PresentationLUTShape) || "");
  return shape.trim().toUpperCase() === "INVERSE";
}

// --- small helpers --------------------------------------------------------------------

function first(value) {
  return Array.isArray(value) ? value[0] : value;
}

function toNumber(value, fallback) {
  const number = Number(first(value));
  return value === undefined || value === null || value === "" || !Number.isFinite(number)
    ? fallback
    : number;
}
