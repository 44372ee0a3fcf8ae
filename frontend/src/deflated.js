// Deflated Explicit VR Little Endian files, which the DICOM listener accepts and Cornerstone's
// parser (dcmjs's streaming reader) reads as if they were not deflated: the wadouri loader's
// `beforeProcessing` hook inflates the dataset and says so in the file meta, so that the
// parser sees plain explicit VR little endian.
import { inflateRaw } from "pako";

const DEFLATED = "1.2.840.10008.1.2.1.99";
const EXPLICIT_LITTLE = "1.2.840.10008.1.2.1";

// The bytes of a response, the dataset of a deflated file inflated (with pako, as
// Cornerstone's older parser did: the browser's DecompressionStream rejects the padding byte
// that may follow the end of the stream).
export async function responseBytes(xhr) {
  const bytes = new Uint8Array(xhr.response);
  const meta = fileMeta(bytes);
  if (!meta || meta.transferSyntax !== DEFLATED) return xhr.response;
  const inflated = inflateRaw(bytes.subarray(meta.end));
  return concat([metaWithSyntax(bytes, meta, EXPLICIT_LITTLE), inflated]).buffer;
}

// The file meta group (0002) is always explicit VR little endian.
const LONG_VRS = new Set(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"]);

// The elements of the file meta group, where it ends and its transfer syntax; null for a
// file without the Part 10 preamble.
function fileMeta(bytes) {
  if (bytes.length < 144 || text(bytes.subarray(128, 132)) !== "DICM") return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const elements = [];
  let offset = 132;
  let transferSyntax = "";
  while (offset + 8 <= bytes.length && view.getUint16(offset, true) === 0x0002) {
    const element = view.getUint16(offset + 2, true);
    const vr = String.fromCharCode(bytes[offset + 4], bytes[offset + 5]);
    const long = LONG_VRS.has(vr);
    const length = long ? view.getUint32(offset + 8, true) : view.getUint16(offset + 6, true);
    const start = offset + (long ? 12 : 8);
    if (element === 0x0010) transferSyntax = text(bytes.subarray(start, start + length));
    elements.push({ element, vr, long, value: bytes.subarray(start, start + length) });
    offset = start + length;
  }
  return { elements, end: offset, transferSyntax };
}

// The preamble and file meta group again, with another transfer syntax (and group length).
function metaWithSyntax(bytes, meta, syntax) {
  const uid = new TextEncoder().encode(syntax.length % 2 ? `${syntax}\0` : syntax);
  const parts = meta.elements
    .filter((item) => item.element !== 0x0000)
    .map((item) => encodeElement(item, item.element === 0x0010 ? uid : item.value));
  const groupLength = new Uint8Array(4);
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  new DataView(groupLength.buffer).setUint32(0, length, true);
  const lengthElement = encodeElement({ element: 0x0000, vr: "UL", long: false }, groupLength);
  return concat([bytes.subarray(0, 132), lengthElement, ...parts]);
}

function encodeElement({ element, vr, long }, value) {
  const head = long ? 12 : 8;
  const out = new Uint8Array(head + value.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, 0x0002, true);
  view.setUint16(2, element, true);
  out.set([vr.charCodeAt(0), vr.charCodeAt(1)], 4);
  if (long) view.setUint32(8, value.length, true);
  else view.setUint16(6, value.length, true);
  out.set(value, head);
  return out;
}

function text(bytes) {
  return new TextDecoder().decode(bytes).replace(/[\0 ]+$/, "");
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
