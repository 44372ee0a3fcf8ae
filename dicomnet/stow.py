"""STOW-RS (DICOM PS3.18, Store Transaction): reading a multipart/related body of
application/dicom parts, and the standard response (per instance: stored, or failed with
its reason code) in the DICOM JSON model."""

from __future__ import annotations

import io
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO


class StowError(Exception):
    """The request as a whole cannot be read; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Outcome:
    sop_class_uid: str
    sop_instance_uid: str
    failure: int | None = None  # None: stored


@dataclass(frozen=True)
class SpooledPart:
    """One part of the body, written to disk as it arrived: its instance alone (the part's
    headers are not written), or only its size when it is over the limit (nothing kept of
    it past that)."""

    path: Path
    size: int  # of the content
    too_large: bool

    def read(self) -> bytes:
        return self.path.read_bytes()

    def open(self) -> BinaryIO:
        return self.path.open("rb")

    def is_part10(self) -> bool:
        """A DICOM Part 10 file as stored: the 128-byte preamble, then "DICM"."""
        with self.path.open("rb") as handle:
            return handle.read(132)[128:] == b"DICM"


# A part's headers (Content-Type, Content-Length...) take a few hundred bytes; more than
# this before the blank line is not a part we read.
PART_HEAD_MAX = 16 * 1024
CHUNK = 1 << 20


def parts_spool(
    content_type: str, stream: BinaryIO, *, folder: Path, part_limit: int, total_limit: int
) -> list[SpooledPart]:
    """The application/dicom parts of a multipart/related body read from `stream` in
    chunks, each written to its own file in `folder`: never the whole body, nor a whole
    part, in memory. A part over `part_limit` bytes is kept only as its size (too_large);
    a body over `total_limit` is refused (413)."""
    # RFC 2046: the delimiter is CRLF "--" boundary; the CRLF belongs to it, not the content.
    delimiter = b"\r\n--" + _boundary(content_type)
    spool = _Spool(folder, part_limit)
    buffer, total, ended = b"\r\n", 0, False  # the first delimiter has no CRLF before it
    while not ended:
        chunk = stream.read(CHUNK)
        total += len(chunk)
        if total > total_limit:
            raise StowError(413, "The request is larger than this server accepts.")
        buffer += chunk
        while True:
            found = buffer.find(delimiter)
            if found < 0:
                keep = len(delimiter) - 1  # a delimiter may straddle two chunks
                spool.write(buffer[: max(0, len(buffer) - keep)])
                buffer = buffer[max(0, len(buffer) - keep) :]
                break
            spool.write(buffer[:found])
            buffer = buffer[found:]  # starts with the delimiter
            after = buffer[len(delimiter) :]
            if len(after) < 2 and chunk:
                break  # read on: "--" (the end) or the next part's line is yet to come
            spool.close_part()
            buffer = after
            if buffer.startswith(b"--"):
                ended = True
                break
            spool.open_part()
        if not chunk and not ended:
            raise StowError(400, "The multipart body is malformed (no closing boundary).")
    parts = spool.parts()
    if not parts:
        raise StowError(400, "The multipart body holds no part.")
    return parts


class _Spool:
    """The current part's file while its bytes arrive: its headers are held (up to
    PART_HEAD_MAX) until their blank line, then the content is written from the file's
    start, so the file is the instance itself."""

    def __init__(self, folder: Path, part_limit: int) -> None:
        self.folder, self.part_limit = folder, part_limit
        self.handle: BinaryIO | None = None
        self.path = Path()
        self.head: bytes | None = b""  # the part's headers so far; None once they ended
        self.written = 0
        self.over = False
        self.closed: list[SpooledPart] = []

    def open_part(self) -> None:
        fd, name = tempfile.mkstemp(dir=self.folder, suffix=".part")
        self.handle, self.path = open(fd, "wb"), Path(name)  # noqa: SIM115
        self.head, self.written, self.over = b"", 0, False

    def write(self, data: bytes) -> None:
        if self.handle is None or not data:
            return  # the preamble before the first part
        if self.head is not None:
            data = self._headers(data)
        self.written += len(data)
        if self.written > self.part_limit:
            self.over = True  # counted, not kept
            return
        self.handle.write(data)

    def _headers(self, data: bytes) -> bytes:
        """Take the part's headers from the data; returns the content that follows them."""
        assert self.head is not None
        head = self.head + data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > PART_HEAD_MAX:
                raise StowError(400, "A part of the multipart body has no header end.")
            self.head = head
            return b""
        _check_part_type(head[:end])
        self.head = None
        return head[end + 4 :]

    def close_part(self) -> None:
        if self.handle is None:
            return
        self.handle.close()
        self.handle = None
        if self.head is not None:
            raise StowError(400, "A part of the multipart body has no header end.")
        self.closed.append(SpooledPart(self.path, self.written, self.over))

    def parts(self) -> list[SpooledPart]:
        return list(self.closed)


def _boundary(content_type: str) -> bytes:
    media, params = _media_type(content_type)
    if media != "multipart/related":
        raise StowError(415, 'Send multipart/related; type="application/dicom".')
    if params.get("type", "application/dicom").lower() != "application/dicom":
        raise StowError(415, "Only application/dicom parts are accepted (no metadata+bulk).")
    boundary = params.get("boundary")
    if not boundary:
        raise StowError(400, "The multipart body has no boundary.")
    return boundary.encode("latin-1")


def _check_part_type(head: bytes) -> None:
    media = re.search(rb"(?im)^content-type:\s*([^;\r\n]+)", head)
    if media and media.group(1).strip().lower() != b"application/dicom":
        raise StowError(415, "Every part must be application/dicom.")


def _media_type(header: str) -> tuple[str, dict[str, str]]:
    media, *rest = header.split(";")
    params = {}
    for item in rest:
        name, _, value = item.strip().partition("=")
        params[name.strip().lower()] = value.strip().strip('"')
    return media.strip().lower(), params


@dataclass(frozen=True)
class Part:
    data: bytes  # a DICOM Part 10 file (preamble, file meta, dataset)
    sop_class_uid: str
    sop_instance_uid: str


def part_read(data: bytes) -> Part:
    """A part's instance as a Part 10 file, and its SOP class and instance; empty UIDs when
    it cannot be read. Clients (dicomweb-client among them) may send the file meta without
    the 128-byte preamble: such a part is written out again with it, pixel data untouched."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        sop_class, instance = _uids(ds)
        if data[128:132] != b"DICM":
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            data = buffer.getvalue()
    except Exception:  # anything a hostile part can make pydicom raise
        return Part(data, "", "")
    return Part(data, sop_class, instance)


def part_identify(handle: BinaryIO) -> Part:
    """The SOP class and instance of a part too large to read, from its header alone (read
    up to the pixel data), without its data; empty UIDs when that cannot be read."""
    import pydicom

    try:
        sop_class, instance = _uids(pydicom.dcmread(handle, force=True, stop_before_pixels=True))
    except Exception:  # anything a hostile part can make pydicom raise
        return Part(b"", "", "")
    return Part(b"", sop_class, instance)


def _uids(ds: Any) -> tuple[str, str]:
    sop_class = str(ds.file_meta.get("MediaStorageSOPClassUID") or ds.get("SOPClassUID", ""))
    instance = str(ds.file_meta.get("MediaStorageSOPInstanceUID") or ds.get("SOPInstanceUID", ""))
    return sop_class, instance


def response_body(outcomes: list[Outcome]) -> dict[str, Any]:
    """The Store Instances Response Module as DICOM JSON."""
    stored = [_reference(o) for o in outcomes if o.failure is None]
    failed = [
        {**_reference(o), "00081197": {"vr": "US", "Value": [o.failure]}}
        for o in outcomes
        if o.failure is not None
    ]
    body: dict[str, Any] = {}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    return body


def _reference(outcome: Outcome) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if outcome.sop_class_uid:
        item["00081150"] = {"vr": "UI", "Value": [outcome.sop_class_uid]}
    if outcome.sop_instance_uid:
        item["00081155"] = {"vr": "UI", "Value": [outcome.sop_instance_uid]}
    return item


def response_status(outcomes: list[Outcome]) -> int:
    """200 all stored, 202 some, 409 none (PS3.18 10.5.3)."""
    failures = sum(outcome.failure is not None for outcome in outcomes)
    if not failures:
        return 200
    return 409 if failures == len(outcomes) else 202
