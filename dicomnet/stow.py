"""STOW-RS (DICOM PS3.18, Store Transaction): reading a multipart/related body of
application/dicom parts, and the standard response (per instance: stored, or failed with
its reason code) in the DICOM JSON model."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any


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


def parts_read(content_type: str, body: bytes) -> list[bytes]:
    """The application/dicom parts of a multipart/related body."""
    media, params = _media_type(content_type)
    if media != "multipart/related":
        raise StowError(415, 'Send multipart/related; type="application/dicom".')
    if params.get("type", "application/dicom").lower() != "application/dicom":
        raise StowError(415, "Only application/dicom parts are accepted (no metadata+bulk).")
    boundary = params.get("boundary")
    if not boundary:
        raise StowError(400, "The multipart body has no boundary.")
    parts = _split(body, boundary.encode("latin-1"))
    if not parts:
        raise StowError(400, "The multipart body holds no part.")
    return parts


def _media_type(header: str) -> tuple[str, dict[str, str]]:
    media, *rest = header.split(";")
    params = {}
    for item in rest:
        name, _, value = item.strip().partition("=")
        params[name.strip().lower()] = value.strip().strip('"')
    return media.strip().lower(), params


def _split(body: bytes, boundary: bytes) -> list[bytes]:
    # RFC 2046: the delimiter is CRLF "--" boundary; the CRLF belongs to it, not the content.
    pieces = (b"\r\n" + body).split(b"\r\n--" + boundary)
    if len(pieces) < 3 or not pieces[-1].startswith(b"--"):
        raise StowError(400, "The multipart body is malformed (no closing boundary).")
    return [_content(piece) for piece in pieces[1:-1]]


def _content(piece: bytes) -> bytes:
    """One part: the rest of the boundary line, headers, a blank line, the content."""
    head, separator, content = piece.partition(b"\r\n\r\n")
    if not separator:
        raise StowError(400, "A part of the multipart body has no header end.")
    media = re.search(rb"(?im)^content-type:\s*([^;\r\n]+)", head)
    if media and media.group(1).strip().lower() != b"application/dicom":
        raise StowError(415, "Every part must be application/dicom.")
    return content


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
        sop_class = str(ds.file_meta.get("MediaStorageSOPClassUID") or ds.get("SOPClassUID", ""))
        instance = str(
            ds.file_meta.get("MediaStorageSOPInstanceUID") or ds.get("SOPInstanceUID", "")
        )
        if data[128:132] != b"DICM":
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            data = buffer.getvalue()
    except Exception:  # anything a hostile part can make pydicom raise
        return Part(data, "", "")
    return Part(data, sop_class, instance)


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
