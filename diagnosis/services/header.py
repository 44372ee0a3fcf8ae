"""The DICOM header of an image's original, element by element, for the viewer's header
panel: identifiers only for those who see the patient anyway; audited."""

from __future__ import annotations

from typing import Any

from django.http import Http404

from chestnet_site.errors import ServiceError
from diagnosis.models import AuditEvent, Image
from diagnosis.services.audit import audit_record

HEADER_VALUE_CHARS = 256  # longer values are cut, the full length said
HEADER_MAX_ELEMENTS = 3000  # a fuzzed or vendor-bloated header still answers quickly
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


def image_header_for_user(*, user, image_id: int) -> dict[str, Any]:
    """The DICOM header of an image's original, element by element, for a user who may see
    its case (else 404; 404 too for a PNG or JPEG original), without pixel data; audited
    (coalesced, like previews).

    Identifiers: radiologists and administrators see every case's patient ID anyway, and a
    clinician sees their own case's; they get the whole header. Anyone else would get it as
    the PS3.15 Basic Profile would leave it (every attribute the profile removes, empties or
    replaces, and private attributes, omitted and counted): defence in depth, since
    `selectors.case_list_for` gives users without a clinical role no case at all."""
    from accounts import roles
    from diagnosis import selectors

    image = selectors.image_get_for_user(user=user, image_id=image_id)
    if image.original_format != "dicom":
        raise Http404("The original is not a DICOM file: it has no header.")
    shows = roles.sees_all_cases(user) or (
        roles.is_clinician(user) and image.case.owner_id == user.pk
    )
    elements, omitted = _header_elements(_header_dataset(image), identifiers=shows)
    audit_record(
        actor=user,
        action=AuditEvent.Action.VIEWED_FILE,
        case=image.case,
        detail=f"header of image {image.pk}",
        coalesce=True,
    )
    return {"image": image.pk, "identifiers_shown": shows, "omitted": omitted, "elements": elements}


def _header_dataset(image: Image) -> Any:
    import pydicom

    try:
        with image.original.open("rb") as handle:
            # force: legacy files without preamble or file meta are DICOM too.
            return pydicom.dcmread(handle, stop_before_pixels=True, force=True)
    except Exception as exc:  # pydicom raises many kinds on a corrupt header
        raise ServiceError("The DICOM header could not be read.") from exc


def _header_elements(ds: Any, *, identifiers: bool) -> tuple[list[dict[str, Any]], int]:
    hidden: frozenset[int] = frozenset() if identifiers else _identifying_tags()
    rows: list[dict[str, Any]] = []
    omitted = 0
    for source in (getattr(ds, "file_meta", None) or [], ds):
        omitted += _header_rows(source, rows, hidden=hidden, depth=0)
    return rows, omitted


def _header_rows(ds: Any, rows: list[dict[str, Any]], *, hidden: frozenset[int], depth: int) -> int:
    """Appends ds's elements (and their sequences' items, one level deeper) to `rows`;
    returns how many were left out as identifying."""
    omitted = 0
    for element in ds:
        if element.tag in (0x7FE00010, 0x7FE00008, 0x7FE00009):  # pixel data of any kind
            continue
        if hidden and (element.tag.is_private or int(element.tag) in hidden):
            omitted += 1
            continue
        if len(rows) >= HEADER_MAX_ELEMENTS:
            break
        rows.append(_header_row(element, depth))
        if element.VR == "SQ":
            for item in element.value:
                omitted += _header_rows(item, rows, hidden=hidden, depth=depth + 1)
    return omitted


def _header_row(element: Any, depth: int) -> dict[str, Any]:
    tag = element.tag
    return {
        "tag": f"({tag.group:04X},{tag.element:04X})",
        "keyword": element.keyword or "",
        "name": element.name,
        "vr": element.VR,
        "value": _header_value(element),
        "depth": depth,
    }


def _header_value(element: Any) -> str:
    from pydicom.multival import MultiValue

    try:
        value = element.value
    except Exception:  # a raw value pydicom cannot convert
        return "(unreadable)"
    if element.VR == "SQ":
        return f"{len(value)} item{'' if len(value) == 1 else 's'}"
    if element.VR in _BINARY_VRS or isinstance(value, bytes):
        return f"(binary, {len(value or b'')} bytes)"
    if value is None:
        return ""
    if isinstance(value, list | tuple | MultiValue):
        text = "\\".join(str(item) for item in value)
    else:
        text = str(value)
    text = text.replace("\x00", " ").strip()
    if len(text) > HEADER_VALUE_CHARS:
        return f"{text[:HEADER_VALUE_CHARS]}… ({len(text)} characters)"
    return text


_IDENTIFYING_TAGS: list[frozenset[int]] = []  # read once per process


def _identifying_tags() -> frozenset[int]:
    """Every attribute the PS3.15 Basic Profile acts on (the table ml.deidentify applies),
    and the file meta's copy of the SOP Instance UID."""
    if not _IDENTIFYING_TAGS:
        from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

        from ml.deidentify import PROFILE_TABLE

        table = dicom_anonymization_database_selector(PROFILE_TABLE)
        rows = (row for code in table.values() for row in code if len(row) == 2)
        _IDENTIFYING_TAGS.append(frozenset({(r[0] << 16) | r[1] for r in rows} | {0x00020003}))
    return _IDENTIFYING_TAGS[0]
