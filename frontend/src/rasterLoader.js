// PNG and JPEG originals as Cornerstone images at their full size and bit depth: 16-bit PNGs
// keep their 16 bits (fast-png); other files are decoded by the browser without colour
// management or EXIF rotation, as the server reads them. Colour becomes luma (ITU-R 601,
// as Pillow's "L"), which is what the AI was shown.
import { imageLoader, metaData } from "@cornerstonejs/core";
import { decode as decodePng, convertIndexedToRgb } from "fast-png";

import { greyImage } from "./greyImage.js";

const SCHEME = "chestnet-raster";
const images = new Map(); // imageId -> { width, height, bits }

export function rasterImageId(url, format) {
  return `${SCHEME}:${format}:${new URL(url, window.location.href).href}`;
}

export function registerRasterLoader() {
  imageLoader.registerImageLoader(SCHEME, (imageId) => ({ promise: loadRaster(imageId) }));
  metaData.addProvider(rasterMetadata, 10000);
}

async function loadRaster(imageId) {
  const [, format, ...rest] = imageId.split(":");
  const response = await fetch(rest.join(":"), { credentials: "same-origin" });
  if (!response.ok) throw new Error(`The original could not be loaded (HTTP ${response.status}).`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const gray = format === "png" ? await pngToGray(bytes) : await bitmapToGray(bytes);
  images.set(imageId, { width: gray.width, height: gray.height, bits: gray.bits });
  return cornerstoneImage(imageId, gray);
}

async function pngToGray(bytes) {
  const png = decodePng(bytes);
  if (png.depth < 8 && !png.palette) return bitmapToGray(bytes);
  if (png.palette) {
    const rgb = convertIndexedToRgb(png);
    return toGray(rgb, png.width, png.height, rgb.length / (png.width * png.height), 8);
  }
  return toGray(png.data, png.width, png.height, png.channels, png.depth);
}

async function bitmapToGray(bytes) {
  const bitmap = await createImageBitmap(new Blob([bytes]), {
    colorSpaceConversion: "none",
    imageOrientation: "none",
    premultiplyAlpha: "none",
  });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  const { data } = context.getImageData(0, 0, bitmap.width, bitmap.height);
  return toGray(data, bitmap.width, bitmap.height, 4, 8);
}

function toGray(data, width, height, channels, bits) {
  const count = width * height;
  const pixels = bits > 8 ? new Uint16Array(count) : new Uint8Array(count);
  if (channels <= 2) {
    for (let i = 0; i < count; i++) pixels[i] = data[i * channels];
  } else {
    for (let i = 0, j = 0; i < count; i++, j += channels) {
      pixels[i] = Math.round((data[j] * 299 + data[j + 1] * 587 + data[j + 2] * 114) / 1000);
    }
  }
  return { pixels, width, height, bits: bits > 8 ? 16 : 8 };
}

// The full range as the window: the viewer then opens with the window from the pixels.
function cornerstoneImage(imageId, { pixels, width, height }) {
  return greyImage(imageId, pixels, { rows: height, columns: width });
}

// No Pixel Spacing: Cornerstone then fills in 1 and marks it a default, so lengths are in px.
function rasterMetadata(type, imageId) {
  if (typeof imageId !== "string" || !imageId.startsWith(`${SCHEME}:`)) return undefined;
  const known = images.get(imageId);
  if (!known) return undefined;
  const { width, height, bits } = known;
  switch (type) {
    case "imagePixelModule":
      return {
        samplesPerPixel: 1,
        photometricInterpretation: "MONOCHROME2",
        rows: height,
        columns: width,
        bitsAllocated: bits,
        bitsStored: bits,
        highBit: bits - 1,
        pixelRepresentation: 0,
      };
    case "imagePlaneModule":
      return {
        rows: height,
        columns: width,
        rowCosines: [1, 0, 0],
        columnCosines: [0, 1, 0],
        imageOrientationPatient: [1, 0, 0, 0, 1, 0],
        imagePositionPatient: [0, 0, 0],
      };
    case "generalSeriesModule":
      return { modality: "OT" };
    case "modalityLutModule":
      return { rescaleSlope: 1, rescaleIntercept: 0 };
    default:
      return undefined;
  }
}
